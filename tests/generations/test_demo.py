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
