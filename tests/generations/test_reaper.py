"""The reaper on the database: a job whose worker is gone (its lease lapsed) runs again — back
to `queued` with the same hold, published again to its pool's queue with its priority — and
fails, released, only after GENERATIONS_MAX_ATTEMPTS. Charged once whatever happens, and a late
finish by the lost worker changes nothing."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import transaction
from django.utils import timezone

from config.celery_app import app
from credits.models import EntryKind, HoldStatus, LedgerEntry
from credits.selectors import ledger_drift
from generations import services
from generations.models import Job, JobEvent, JobStatus
from generations.services import execution
from generations.tasks import reap_jobs
from infra_costs.models import GpuRun
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("instant_backend", "purge_queues"),
]

LEASE_S = 30


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    settings.GENERATIONS_LEASE_S = LEASE_S
    settings.GENERATIONS_MAX_ATTEMPTS = 3


def submit(org, prompt="a cat"):
    """A job accepted an hour ago (before any attempt these tests start)."""
    job, _ = services.generation_submit(
        organization=org,
        model_slug="sdxl",
        params={"prompt": prompt},
        now=timezone.now() - timedelta(hours=1),
    )
    return job


def start_attempt(job, *, at, worker="worker-1"):
    """What a worker does before it calls the backend: claim the job (a new attempt, its lease
    and its GPU run) — and then the worker is lost. Returns what it would have run."""
    with transaction.atomic():
        claimed, why = execution._claim(job.pk, worker=worker, now=at)
    assert why == "claimed"
    return claimed


def published(queue: str = "gpu.a100") -> list[tuple[list, int | None]]:
    """The run-task messages waiting in the broker queue (taken out): (args, priority)."""
    messages = []
    with app.connection_for_read() as conn:
        bound = app.amqp.queues[queue].bind(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            assert message.headers["task"] == "generations.tasks.run_generation"
            messages.append((args, message.properties.get("priority")))
    return messages


def outcome(result: dict) -> dict:
    """The reaper's counts of jobs it moved (without those it only looked at)."""
    return {k: result[k] for k in ("requeued", "retried_lost", "failed_lost")}


def entries(job, kind) -> int:
    return LedgerEntry.objects.filter(hold_id=job.hold_id, kind=kind).count()


def runs(job) -> list[tuple[str, str]]:
    return list(
        GpuRun.objects.filter(external_id__startswith=str(job.pk))
        .order_by("started_at", "external_id")
        .values_list("external_id", "status")
    )


def test_a_lapsed_lease_requeues_the_job_with_the_same_hold_and_it_then_succeeds_charged_once(
    django_capture_on_commit_callbacks,
):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    published()  # the submission's own message (its on-commit never ran here): none
    t0 = timezone.now() - timedelta(seconds=10 * LEASE_S)
    start_attempt(job, at=t0)
    hold_id = job.hold_id

    assert outcome(services.jobs_reap(now=t0 + timedelta(seconds=LEASE_S - 1))) == {
        "requeued": 0,
        "retried_lost": 0,
        "failed_lost": 0,
    }  # the lease is still live: nothing happens
    reaped_at = t0 + timedelta(seconds=LEASE_S + 5)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.jobs_reap(now=reaped_at)
    assert outcome(result) == {"requeued": 0, "retried_lost": 1, "failed_lost": 0}

    job.refresh_from_db()
    assert (job.status, job.attempts, job.hold_id) == (JobStatus.QUEUED, 1, hold_id)
    assert (job.node, job.started_at, job.lease_expires_at) == ("", None, None)
    assert job.enqueued_at == reaped_at
    # the same hold, still held: nothing released, nothing held again, nothing charged
    assert job.hold.status == HoldStatus.HELD
    assert account_of(org).held == D(5)
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (0, 0)
    assert LedgerEntry.objects.filter(kind=EntryKind.HOLD).count() == 1
    # the lost attempt's GPU run is closed as failed when its lease lapsed: busy until then
    lost_run = GpuRun.objects.get(external_id=str(job.pk))
    assert lost_run.status == "failed"
    assert lost_run.finished_at == t0 + timedelta(seconds=LEASE_S)
    # the status log says so
    last = JobEvent.objects.filter(job=job).order_by("at", "id").last()
    assert last.status == JobStatus.QUEUED
    assert last.message == "worker lost during attempt 1 of 3; requeued"
    # published again to the pool's queue with the job's priority
    assert published() == [([str(job.pk)], job.priority)]
    assert job.priority == 1  # studio

    # the next delivery runs it: attempt 2, charged once
    assert services.generation_run(job_id=job.pk, worker="worker-2") == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged) == (JobStatus.SUCCEEDED, 2, D(5))
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (1, 0)
    assert account_of(org).balance == D(10000) - D(5)
    assert runs(job) == [(str(job.pk), "failed"), (f"{job.pk}#2", "succeeded")]
    log = [(e.status, e.message) for e in JobEvent.objects.filter(job=job).order_by("at", "id")]
    assert log[1:4] == [
        ("running", f"started on {lost_run.node.name}"),
        ("queued", "worker lost during attempt 1 of 3; requeued"),
        ("running", f"attempt 2 of 3 started on {job.node}"),
    ]
    assert [status for status, _ in log] == ["queued", "running", "queued", "running", "succeeded"]
    assert ledger_drift() == []


def test_the_last_attempt_lost_fails_the_job_and_releases_its_hold_once(
    settings, django_capture_on_commit_callbacks
):
    settings.GENERATIONS_MAX_ATTEMPTS = 2
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    published()
    t = timezone.now() - timedelta(seconds=10 * LEASE_S)
    for attempt in (1, 2):
        start_attempt(job, at=t)
        t += timedelta(seconds=2 * LEASE_S)
        with django_capture_on_commit_callbacks(execute=True):
            result = services.jobs_reap(now=t)
        expected = (1, 0) if attempt == 1 else (0, 1)
        assert (result["retried_lost"], result["failed_lost"]) == expected
        assert len(published()) == expected[0]

    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == (JobStatus.FAILED, "worker_lost", 2)
    assert job.credits_charged == 0
    assert job.hold.status == HoldStatus.RELEASED
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (0, 1)
    assert account_of(org).balance == D(500)
    assert account_of(org).held == 0
    assert runs(job) == [(str(job.pk), "failed"), (f"{job.pk}#2", "failed")]
    assert "(released)" in JobEvent.objects.filter(job=job).order_by("at", "id").last().message
    # idempotent: the reaper again, a redelivery, a late finish — nothing changes
    assert outcome(services.jobs_reap(now=t)) == {
        "requeued": 0,
        "retried_lost": 0,
        "failed_lost": 0,
    }
    assert services.generation_run(job_id=job.pk) == "already failed"
    assert entries(job, EntryKind.RELEASE) == 1
    assert ledger_drift() == []


def test_a_late_finish_by_the_lost_worker_neither_charges_twice_nor_changes_the_state():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    t0 = timezone.now() - timedelta(seconds=10 * LEASE_S)
    lost_job, backend, request = start_attempt(job, at=t0, worker="worker-1")
    services.jobs_reap(now=t0 + timedelta(seconds=2 * LEASE_S))
    # The lost worker was only slow (its heartbeat stalled): its backend call ends now.
    late = backend.run(request, node=lost_job.node)
    assert (
        execution._finish(job.pk, attempt=1, outcome=late, error=None, worker="worker-1") == "stale"
    )
    job.refresh_from_db()
    assert (job.status, job.hold.status) == (JobStatus.QUEUED, HoldStatus.HELD)
    assert entries(job, EntryKind.CAPTURE) == 0

    # The next attempt starts; the lost worker's finish (success or failure) still loses.
    second, backend2, request2 = start_attempt(job, at=timezone.now(), worker="worker-2")
    assert second.attempts == 2
    for error in (None, execution.BackendError("boom", code="gpu_failure")):
        assert (
            execution._finish(
                job.pk, attempt=1, outcome=late if error is None else None, error=error, worker=""
            )
            == "stale"
        )
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 2)
    outcome = backend2.run(request2, node=second.node)
    assert execution._finish(job.pk, attempt=2, outcome=outcome, error=None, worker="w2") == (
        "succeeded"
    )
    job.refresh_from_db()
    assert (job.status, job.credits_charged) == (JobStatus.SUCCEEDED, D(5))
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (1, 0)
    assert account_of(org).balance == D(495)
    assert runs(job) == [(str(job.pk), "failed"), (f"{job.pk}#2", "succeeded")]
    # the lost attempt's run stays closed at its lapse time
    assert GpuRun.objects.get(external_id=str(job.pk)).finished_at == t0 + timedelta(
        seconds=LEASE_S
    )


def test_a_redelivery_after_the_lease_lapsed_runs_the_next_attempt_as_the_reaper_would():
    """A redelivered message (the broker's own retry) may get there before the reaper: it
    requeues the job the same way and runs it at once."""
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    start_attempt(job, at=timezone.now() - timedelta(seconds=2 * LEASE_S))
    assert services.generation_run(job_id=job.pk, worker="worker-2") == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert [e.status for e in JobEvent.objects.filter(job=job).order_by("at", "id")] == [
        "queued",
        "running",
        "queued",
        "running",
        "succeeded",
    ]
    assert runs(job) == [(str(job.pk), "failed"), (f"{job.pk}#2", "succeeded")]
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (1, 0)
    # while a lease is live, a duplicate delivery does nothing
    other = submit(org, prompt="another")
    start_attempt(other, at=timezone.now())
    assert services.generation_run(job_id=other.pk) == "running elsewhere"
    assert Job.objects.get(pk=other.pk).attempts == 1


def test_a_redelivery_of_a_job_lost_on_its_last_attempt_fails_it_released(settings):
    settings.GENERATIONS_MAX_ATTEMPTS = 1
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    claimed_at = timezone.now() - timedelta(seconds=2 * LEASE_S)
    start_attempt(job, at=claimed_at)
    assert services.generation_run(job_id=job.pk) == "gave up"
    job.refresh_from_db()
    assert (job.status, job.error_code, job.credits_charged) == ("failed", "worker_lost", 0)
    assert (entries(job, EntryKind.CAPTURE), entries(job, EntryKind.RELEASE)) == (0, 1)
    assert runs(job) == [(str(job.pk), "failed")]
    lapsed_at = claimed_at + timedelta(seconds=LEASE_S)  # busy until then, not until now
    assert GpuRun.objects.get(external_id=str(job.pk)).finished_at == lapsed_at


def test_the_beat_task_is_the_reaper(django_capture_on_commit_callbacks):
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    published()
    start_attempt(job, at=timezone.now() - timedelta(seconds=2 * LEASE_S))
    with django_capture_on_commit_callbacks(execute=True):
        assert outcome(reap_jobs()) == {"requeued": 0, "retried_lost": 1, "failed_lost": 0}
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    assert published() == [([str(job.pk)], 5)]  # starter's priority


def test_each_attempt_keeps_its_hold_alive_past_the_stale_hold_sweep(settings):
    """A job still queued or running is not stuck: every claim pushes the hold's expiry to at
    least now + CREDITS_HOLD_TIMEOUT_S, so the sweep never releases a live job's credits."""
    settings.CREDITS_HOLD_TIMEOUT_S = 600
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)  # accepted an hour ago: its hold expired 50 minutes ago on paper
    assert job.hold.expires_at < timezone.now()
    at = timezone.now()
    start_attempt(job, at=at)
    job.hold.refresh_from_db()
    assert job.hold.status == HoldStatus.HELD
    assert job.hold.expires_at == at + timedelta(seconds=600)


def test_a_job_whose_hold_was_swept_fails_uncharged_instead_of_running_for_free():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    from credits import services as credit_services

    # The job waited past its hold's timeout and the sweep got there first.
    credit_services.holds_release_stale(now=timezone.now() + timedelta(days=1))
    job.hold.refresh_from_db()
    assert job.hold.status == HoldStatus.EXPIRED
    with transaction.atomic():
        claimed, why = execution._claim(job.pk, worker="w", now=timezone.now())
    assert (claimed, why) == (None, "failed")
    job.refresh_from_db()
    assert (job.status, job.error_code, job.credits_charged) == (
        JobStatus.FAILED,
        "hold_expired",
        D(0),
    )
    assert entries(job, EntryKind.CAPTURE) == 0
    assert account_of(org).balance == D(500) and account_of(org).held == 0


def test_a_hold_swept_while_the_attempt_ran_fails_the_job_instead_of_looping_on_capture():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job = submit(org)
    claimed, backend, request = start_attempt(job, at=timezone.now())
    outcome = backend.run(request, node=claimed.node)
    from credits import services as credit_services

    # An attempt longer than the hold's timeout: the sweep expires the hold mid-run.
    credit_services.holds_release_stale(now=timezone.now() + timedelta(days=1))
    assert execution._finish(job.pk, attempt=1, outcome=outcome, error=None, worker="w") == "failed"
    job.refresh_from_db()
    assert (job.status, job.error_code, job.credits_charged) == (
        JobStatus.FAILED,
        "hold_expired",
        D(0),
    )
    assert entries(job, EntryKind.CAPTURE) == 0
    assert runs(job) == [(str(job.pk), "failed")]
    assert account_of(org).balance == D(500) and account_of(org).held == 0
