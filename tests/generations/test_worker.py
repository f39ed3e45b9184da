"""Generations through a real Celery worker process on Redis and PostgreSQL: charged exactly
once through duplicate deliveries and a SIGKILLed worker (whose jobs run again on another),
paid tiers first when saturated, nothing charged without running when the broker is down."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from django.db.models import Count

from config.celery_app import app
from credits.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import Job, JobEvent, JobStatus
from generations.tasks import reap_jobs, run_generation
from infra_costs.models import GpuRun
from tests.factories import make_ai_model, make_org
from tests.generations.conftest import wait_for
from tests.redis_outage import point_broker_at

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def submit(org, prompt="a cat", **kw):
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt}, **kw
    )
    return job


def statuses(ids) -> dict[str, int]:
    rows = Job.objects.filter(pk__in=ids).values("status").annotate(n=Count("id"))
    return {r["status"]: r["n"] for r in rows}


def all_terminal(ids) -> bool:
    return not Job.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists()


def assert_charged_exactly_once(ids) -> None:
    for job in Job.objects.filter(pk__in=ids):
        captures = LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.CAPTURE).count()
        releases = LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.RELEASE).count()
        if job.status == JobStatus.SUCCEEDED:
            assert (captures, releases) == (1, 0), job
            assert job.credits_charged == job.credits_held
        else:
            assert (captures, releases) == (0, 1), job
            assert job.credits_charged == 0
    assert not CreditHold.objects.filter(status=HoldStatus.HELD).exists()


def test_submit_run_succeed_capture_once_through_the_worker(start_worker):
    start_worker()
    org = make_org(plan="studio")
    make_ai_model(credits="4")
    jobs = [submit(org, prompt=f"cat {i}") for i in range(6)]
    failing = submit(org, prompt="[fail] please")
    ids = [j.pk for j in [*jobs, failing]]
    wait_for(lambda: all_terminal(ids), timeout=60, message="jobs to finish")
    assert statuses(ids) == {"succeeded": 6, "failed": 1}
    assert_charged_exactly_once(ids)
    account = CreditAccount.objects.get(organization=org)
    assert account.balance == D(10000) - 6 * D(4)
    # each job's status log: queued → running → terminal, timestamps in order
    for job in Job.objects.filter(pk__in=ids):
        events = list(JobEvent.objects.filter(job=job).order_by("at", "id"))
        assert [e.status for e in events] == ["queued", "running", job.status]
        assert events[0].at <= events[1].at <= events[2].at


def test_the_same_task_delivered_twice_captures_once(start_worker):
    start_worker(concurrency=2)
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.3})
    job = submit(org)
    for _ in range(3):  # duplicates of the message the submission already published
        run_generation.apply_async(args=[str(job.pk)], queue="gpu.a100", priority=1)
    wait_for(lambda: all_terminal([job.pk]), timeout=60, message="job to finish")
    time.sleep(1.0)  # let the duplicates run too
    assert_charged_exactly_once([job.pk])
    job.refresh_from_db()
    assert job.attempts == 1


def gpu_runs(job) -> list[tuple[str, str]]:
    """The GPU-run rows of a job's attempts, in order: (external id, status)."""
    return list(
        GpuRun.objects.filter(external_id__startswith=str(job.pk))
        .order_by("started_at", "external_id")
        .values_list("external_id", "status")
    )


def test_a_job_whose_worker_is_sigkilled_succeeds_on_its_next_attempt_charged_once(
    start_worker, settings
):
    settings.GENERATIONS_LEASE_S = 5  # heartbeats every 1.7 s: a busy machine never misses 3
    env = {"GENERATIONS_LEASE_S": 5, "GENERATIONS_SIMULATED_SPEEDUP": 1}
    worker = start_worker(**env)
    org = make_org(plan="studio")
    make_ai_model(credits="3", backend_config={"mean_s": 4.0, "sigma": 0.05})
    job = submit(org)
    wait_for(
        lambda: Job.objects.filter(pk=job.pk, status="running").exists(),
        timeout=30,
        message="the job to start",
    )
    worker.kill()  # SIGKILL mid-job: the whole worker, the run with it
    lost = Job.objects.get(pk=job.pk)
    assert (lost.status, lost.attempts) == (JobStatus.RUNNING, 1)

    start_worker(**env)  # another worker; the lost message is not redelivered for an hour

    def succeeded():
        reap_jobs()  # the beat's task: requeues the job once its lease lapsed
        return all_terminal([job.pk])

    wait_for(succeeded, timeout=90, interval=0.5, message="the job to run again and finish")
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert_charged_exactly_once([job.pk])
    assert CreditAccount.objects.get(organization=org).balance == D(10000) - D(3)
    assert gpu_runs(job) == [(str(job.pk), "failed"), (f"{job.pk}#2", "succeeded")]
    lost_run, next_run = GpuRun.objects.filter(external_id__startswith=str(job.pk)).order_by(
        "started_at"
    )
    # the lost attempt's node was busy until its lease lapsed, then the next attempt started
    assert lost.lease_expires_at <= lost_run.finished_at <= next_run.started_at
    log = list(JobEvent.objects.filter(job=job).order_by("at", "id"))
    assert [e.status for e in log] == ["queued", "running", "queued", "running", "succeeded"]
    assert log[2].message == "worker lost during attempt 1 of 3; requeued"


def test_sigkilled_worker_mid_job_then_restart_runs_every_job_again_and_charges_once(
    start_worker, settings
):
    settings.GENERATIONS_LEASE_S = 3
    settings.GENERATIONS_REQUEUE_AFTER_S = 3
    env = {"GENERATIONS_LEASE_S": 3, "GENERATIONS_SIMULATED_SPEEDUP": 1}
    worker = start_worker(concurrency=2, **env)
    org = make_org(plan="studio")
    make_ai_model(credits="3", backend_config={"mean_s": 1.5, "sigma": 0.1})
    ids = [submit(org, prompt=f"job {i}").pk for i in range(8)]
    wait_for(
        lambda: Job.objects.filter(pk__in=ids, status="running").count() >= 2,
        timeout=30,
        message="jobs to start",
    )
    worker.kill()  # SIGKILL mid-job: two jobs running, the rest queued or prefetched
    running_at_crash = set(
        Job.objects.filter(pk__in=ids, status="running").values_list("pk", flat=True)
    )
    assert running_at_crash

    start_worker(concurrency=2, **env)

    # The beat's reaper, run by hand: publishes again what was lost in the dead worker's
    # prefetch, requeues the jobs whose lease lapsed.
    def settled():
        services.jobs_reap()
        return all_terminal(ids)

    wait_for(settled, timeout=120, interval=1.0, message="every job terminal after restart")
    assert_charged_exactly_once(ids)
    assert statuses(ids) == {"succeeded": len(ids)}  # none failed: the lost ones ran again
    assert CreditAccount.objects.get(organization=org).balance == D(10000) - len(ids) * D(3)
    for job in Job.objects.filter(pk__in=running_at_crash):
        assert job.attempts >= 2
        runs = gpu_runs(job)
        assert len(runs) == job.attempts
        assert [status for _, status in runs] == ["failed"] * (job.attempts - 1) + ["succeeded"]


def test_paid_job_starts_before_queued_free_jobs_when_the_pool_is_saturated(start_worker):
    start_worker(concurrency=1, GENERATIONS_SIMULATED_SPEEDUP=1)
    make_ai_model(credits="1", backend_config={"mean_s": 0.4, "sigma": 0.01})
    free_orgs = [make_org(plan="free") for _ in range(5)]
    free_jobs = [submit(org, prompt=f"free {i}") for i, org in enumerate(free_orgs)]
    wait_for(
        lambda: Job.objects.filter(pk=free_jobs[0].pk, status="running").exists(),
        timeout=30,
        message="first free job to start",
    )
    studio_job = submit(make_org(plan="studio"), prompt="paid")
    ids = [j.pk for j in [*free_jobs, studio_job]]
    wait_for(lambda: all_terminal(ids), timeout=60, message="all jobs to finish")
    started = {j.pk: j.started_at for j in Job.objects.filter(pk__in=ids)}
    first_free = min(started[j.pk] for j in free_jobs)
    queued_free = [started[j.pk] for j in free_jobs if started[j.pk] != first_free]
    assert all(started[studio_job.pk] < t for t in queued_free), (
        "the studio job waited behind free jobs queued before it"
    )


def test_broker_down_at_submission_accepts_without_charging_then_runs(start_worker, settings):
    settings.GENERATIONS_REQUEUE_AFTER_S = 0
    org = make_org(plan="studio")
    make_ai_model(credits="2")
    real_url = app.conf.broker_url
    point_broker_at("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        job = submit(org)  # accepted: the job and its hold are committed; publishing fails
    finally:
        point_broker_at(real_url)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.hold.status == HoldStatus.HELD
    assert not LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.CAPTURE).exists()

    start_worker()
    time.sleep(1.0)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED  # nothing was published: nothing ran

    def ran():
        services.jobs_reap()  # publishes it again, the broker being back
        return all_terminal([job.pk])

    wait_for(ran, timeout=60, interval=0.5, message="the reaper to publish the job")
    assert_charged_exactly_once([job.pk])
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_queued_jobs_are_not_charged_and_nothing_is_left_held():
    """Sanity check of the helper's own assertion on an empty set (it must not pass vacuously
    on real data): a held hold makes it fail."""
    org = make_org(plan="studio")
    make_ai_model(credits="2")
    job = submit(org)
    with pytest.raises(AssertionError):
        assert_charged_exactly_once([job.pk])
