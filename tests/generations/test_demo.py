"""The demo world of `seed_demo`: idempotent, and its history has a realistic idle share."""

from datetime import timedelta

import pytest
from django.db.models import F, Sum

from generations.demo import seed_world
from generations.models import AIModel
from infra_costs.models import GpuRun, NodePool, UptimeInterval

pytestmark = pytest.mark.django_db


def test_seed_world_twice_duplicates_nothing():
    first = seed_world(days=3, seed=7)
    counts = (GpuRun.objects.count(), UptimeInterval.objects.count(), AIModel.objects.count())
    second = seed_world(days=3, seed=7)
    assert first.history_created and not second.history_created
    assert counts == (
        GpuRun.objects.count(),
        UptimeInterval.objects.count(),
        AIModel.objects.count(),
    )
    assert {p.slug for p in NodePool.objects.all()} == {"a100", "l4"}
    assert all(m.rates.exists() for m in AIModel.objects.filter(is_active=True))


def test_history_runs_sit_inside_uptime_and_the_gpus_are_about_half_idle():
    seed_world(days=7, seed=3)
    uptime = UptimeInterval.objects.aggregate(s=Sum(F("ended_at") - F("started_at")))["s"]
    busy = GpuRun.objects.aggregate(s=Sum(F("finished_at") - F("started_at")))["s"]
    idle_share = 1 - busy / uptime
    assert 0.35 < idle_share < 0.65, idle_share
    for run in GpuRun.objects.order_by("?")[:200]:
        assert UptimeInterval.objects.filter(
            node=run.node, started_at__lte=run.started_at, ended_at__gte=run.finished_at
        ).exists(), run
    assert GpuRun.objects.filter(status="failed").exists()
    assert GpuRun.objects.filter(finished_at__lt=F("started_at") + timedelta(0)).count() == 0


def test_the_demo_organization_gets_a_job_history_with_real_ledger_movements():
    """seed_demo_jobs: past jobs of the demo organization, each with its hold placed and
    captured (or released) through credits.services at the job's time; idempotent."""
    from credits.models import CreditHold, LedgerEntry
    from credits.selectors import ledger_drift, usage_daily
    from generations.demo import DEMO_JOB_DAYS, seed_demo_jobs
    from generations.models import Job
    from tests.factories import make_org

    seed_world(days=30, seed=5)
    org = make_org(slug="demo", plan="creator")
    user = org.memberships.get().user

    created = seed_demo_jobs(organization=org, user=user, seed=5)

    jobs = Job.objects.filter(organization=org)
    assert created == jobs.count() >= DEMO_JOB_DAYS
    assert {j.status for j in jobs} <= {"succeeded", "failed"}
    for job in jobs:
        hold = CreditHold.objects.get(key=f"job:{job.pk}")
        assert job.hold_id == hold.pk and hold.created_at == job.created_at
        expected = "captured" if job.status == "succeeded" else "released"
        assert hold.status == expected
        assert job.credits_charged == (hold.amount if expected == "captured" else 0)
        if job.status == "succeeded":
            assert f"/{job.pk}/output/{job.pk}." in job.result["url"]
    assert ledger_drift() == []
    assert LedgerEntry.objects.filter(account__organization=org).exists()
    # The usage chart has history over more than one day.
    days_with_use = [r for r in usage_daily(organization=org, days=DEMO_JOB_DAYS) if r.generations]
    assert len(days_with_use) > 3
    # Again: nothing new.
    assert seed_demo_jobs(organization=org, user=user, seed=5) == 0
    assert Job.objects.filter(organization=org).count() == created
