"""The terminal transaction survives connection loss (issue 13): a job whose GPU work completed
is recorded — charged once, its GPU run closed once — even when the worker's PostgreSQL
connection is terminated at the finish, and, when the database stays away, its result waits in
the spool and is recorded later; it never fails `worker_lost`.

Real PostgreSQL, transactional: the worker's backend is terminated with
`pg_terminate_backend` from another connection at the exact moment of the finish."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection, connections
from django.utils import timezone

from credits.models import EntryKind, HoldStatus, LedgerEntry
from credits.selectors import ledger_drift
from generations import services
from generations.models import Job, JobEvent, JobStatus
from generations.services import execution, spool
from infra_costs.models import GpuRun
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_finish", "purge_queues"),
]


@pytest.fixture
def fast_finish(settings, tmp_path):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    settings.GENERATIONS_LEASE_S = 30
    settings.GENERATIONS_MAX_ATTEMPTS = 3
    settings.GENERATIONS_FINISH_TRIES = 3
    settings.GENERATIONS_FINISH_BACKOFF_S = 0.01
    settings.GENERATIONS_SPOOL_DIR = tmp_path / "spool"


def on_other_connection(sql: str, params=()) -> list:
    """Run `sql` on another PostgreSQL connection (a thread has its own)."""
    rows: list = []

    def run():
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute(sql, params)
                rows.extend(cursor.fetchall())
        finally:
            connections["default"].close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return rows


def terminate(pid: int) -> None:
    """Terminate a backend and wait until it is gone."""
    on_other_connection("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while on_other_connection("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]):
        assert time.monotonic() < deadline, "backend not terminated"
        time.sleep(0.02)


class CutAtCapture:
    """Wraps `hold_capture` in the finish: while `cuts` > 0, the worker's own connection is
    terminated right before the capture runs (so the terminal transaction fails mid-way)."""

    def __init__(self, monkeypatch, cuts: int):
        self.cuts = cuts
        self.calls = 0
        self.real = execution.hold_capture
        monkeypatch.setattr(execution, "hold_capture", self)

    def __call__(self, **kwargs):
        self.calls += 1
        if self.cuts > 0:
            self.cuts -= 1
            terminate(connection.connection.info.backend_pid)
        return self.real(**kwargs)


def submit(org, prompt="a cat"):
    job, _ = services.generation_submit(
        organization=org,
        model_slug="sdxl",
        params={"prompt": prompt},
        now=timezone.now() - timedelta(minutes=5),
    )
    return job


def captures(job) -> int:
    return LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.CAPTURE).count()


def releases(job) -> int:
    return LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.RELEASE).count()


def runs(job) -> list[tuple[str, str]]:
    return list(
        GpuRun.objects.filter(external_id__startswith=str(job.pk))
        .order_by("started_at", "external_id")
        .values_list("external_id", "status")
    )


def log(job) -> list[tuple[str, str]]:
    return [(e.status, e.message) for e in JobEvent.objects.filter(job=job).order_by("at", "id")]


def lapse(job) -> None:
    """The job's lease lapses (its worker stopped beating)."""
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    time.sleep(0.01)


def spooled() -> list[str]:
    return sorted(p.name for p in spool.results_pending())


def assert_succeeded_once(job, org, *, runs_expected):
    job.refresh_from_db()
    assert (job.status, job.credits_charged) == (JobStatus.SUCCEEDED, D(5))
    assert job.result
    assert job.hold.status == HoldStatus.CAPTURED
    assert (captures(job), releases(job)) == (1, 0)
    assert account_of(org).balance == D(10000) - D(5)
    assert account_of(org).held == D(0)
    assert runs(job) == runs_expected
    assert GpuRun.objects.get(external_id=runs_expected[-1][0]).finished_at is not None
    assert not any("worker_lost" in message for _, message in log(job))
    assert [s for s, _ in log(job)].count(JobStatus.SUCCEEDED) == 1
    assert ledger_drift() == []


def test_a_connection_terminated_at_the_finish_is_retried_and_the_job_succeeds_charged_once(
    monkeypatch,
):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    cut = CutAtCapture(monkeypatch, cuts=1)

    assert services.generation_run(job_id=job.pk, worker="w1") == "succeeded"

    assert cut.calls == 2  # the first try died mid-transaction, the second committed
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])
    assert spooled() == []


def test_a_finish_whose_commit_answer_was_lost_is_not_recorded_twice(monkeypatch):
    """The unknown outcome: the terminal transaction committed, then the worker saw a
    connection error. The retry finds the job finished by this attempt and changes nothing."""
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    real_save_with_event = execution.job_save_with_event
    lost = {"n": 0}

    def save_with_event_then_lose_the_answer(job_, *, status, **kwargs):
        real_save_with_event(job_, status=status, **kwargs)
        if status == JobStatus.SUCCEEDED and not lost["n"]:
            lost["n"] += 1

            def connection_lost():
                terminate(connection.connection.info.backend_pid)
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")  # raises: the backend is gone

            execution.transaction.on_commit(connection_lost)

    monkeypatch.setattr(execution, "job_save_with_event", save_with_event_then_lose_the_answer)

    assert services.generation_run(job_id=job.pk, worker="w1") == "succeeded"

    assert lost["n"] == 1
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])


def test_every_backend_terminated_while_the_job_runs_keeps_its_heartbeat_beating(settings):
    """Terminating every backend of the database (the heartbeat thread's too) must not stop
    the lease renewals: a live worker's job is never taken for lost."""
    settings.GENERATIONS_LEASE_S = 1  # a beat every 0.5 s
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    with execution.transaction.atomic():
        (running, _backend, _request), why = execution._claim(
            job.pk, worker="w", now=timezone.now()
        )
    assert why == "claimed"
    with execution._Heartbeat(job.pk, running.attempts):
        time.sleep(0.8)  # the heartbeat has connected
        mine = connection.connection.info.backend_pid  # the test's own: kept
        killed = on_other_connection(
            "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
            "OFFSET 0) others",
            [mine],
        )
        assert killed  # the heartbeat's connection among them
        time.sleep(1.6)
        first = Job.objects.get(pk=job.pk).lease_expires_at
        time.sleep(1.2)
        second = Job.objects.get(pk=job.pk).lease_expires_at
    assert second > first > timezone.now() - timedelta(seconds=1)


def test_a_database_away_for_longer_spools_the_result_and_the_drain_records_it_once(
    monkeypatch,
):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    cut = CutAtCapture(monkeypatch, cuts=3)  # every try of the finish (3) fails

    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"

    job.refresh_from_db()
    assert (job.status, job.hold.status, captures(job)) == (JobStatus.RUNNING, "held", 0)
    assert runs(job) == [(str(job.pk), "running")]
    assert spooled() == [f"{job.pk}-1.json"]
    record = json.loads((spool.spool_dir() / f"{job.pk}-1.json").read_text())
    assert (record["attempt"], record["worker"]) == (1, "w1")
    assert record["outcome"]["output"]

    # The database is back: the drain records it — once, however many times it runs.
    assert spool.results_drain() == {"recorded": 1, "stale": 0, "kept": 0}
    assert spool.results_drain() == {"recorded": 0, "stale": 0, "kept": 0}
    assert cut.calls == 4
    assert spooled() == []
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])


def test_a_spooled_result_is_recorded_by_the_workers_next_task(monkeypatch):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    first, second = submit(org, "a cat"), submit(org, "a dog")
    CutAtCapture(monkeypatch, cuts=3)
    assert services.generation_run(job_id=first.pk, worker="w1") == "spooled"

    assert services.generation_run(job_id=second.pk, worker="w1") == "succeeded"

    assert spooled() == []
    first.refresh_from_db()
    assert (first.status, captures(first)) == (JobStatus.SUCCEEDED, 1)
    assert account_of(org).balance == D(10000) - D(10)


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_the_reaper_records_a_spooled_result_before_it_judges_the_lease_lapsed(
    settings, monkeypatch, max_attempts
):
    """The lease lapsed while the result waited (the worker gave up retrying and the
    heartbeat stopped): the reaper drains the spool first — succeeded, never `worker_lost`,
    even on the job's last attempt."""
    settings.GENERATIONS_MAX_ATTEMPTS = max_attempts
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    CutAtCapture(monkeypatch, cuts=3)
    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"

    result = services.jobs_reap(now=timezone.now() + timedelta(minutes=5))

    assert result["retried_lost"] == result["failed_lost"] == 0
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])


def test_a_spooled_success_wins_over_a_requeue_no_newer_attempt_started(settings, monkeypatch):
    """The reaper ran where the spool is not (another host) and requeued the job; the spooled
    result is recorded when drained, the attempt's GPU run corrected to succeeded, and the
    requeued message then finds the job done."""
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    CutAtCapture(monkeypatch, cuts=3)
    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"
    here = settings.GENERATIONS_SPOOL_DIR
    settings.GENERATIONS_SPOOL_DIR = here.parent / "another-host"
    lapse(job)
    assert services.jobs_reap()["retried_lost"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert runs(job) == [(str(job.pk), "failed")]

    settings.GENERATIONS_SPOOL_DIR = here
    assert spool.results_drain() == {"recorded": 1, "stale": 0, "kept": 0}

    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])
    run = GpuRun.objects.get(external_id=str(job.pk))
    assert run.finished_at <= job.finished_at
    assert [m for _, m in log(job)][-2:] == [
        "worker lost during attempt 1 of 3; requeued",
        "charged 5 credits (attempt 1, recorded late)",
    ]
    assert job.node and job.started_at
    # the requeued message, delivered now, runs nothing
    assert services.generation_run(job_id=job.pk, worker="w2") == "already succeeded"
    assert captures(job) == 1


def test_a_spooled_result_is_dropped_when_a_newer_attempt_started(settings, monkeypatch):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    CutAtCapture(monkeypatch, cuts=3)
    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"
    here = settings.GENERATIONS_SPOOL_DIR
    settings.GENERATIONS_SPOOL_DIR = here.parent / "another-host"
    lapse(job)
    services.jobs_reap()
    with execution.transaction.atomic():
        (second, backend, request), why = execution._claim(job.pk, worker="w2", now=timezone.now())
    assert (why, second.attempts) == ("claimed", 2)

    settings.GENERATIONS_SPOOL_DIR = here
    assert spool.results_drain() == {"recorded": 0, "stale": 1, "kept": 0}
    assert spooled() == []
    job.refresh_from_db()
    assert (job.status, job.attempts, captures(job)) == (JobStatus.RUNNING, 2, 0)

    outcome = backend.run(request, node=second.node)
    assert execution._finish_recorded(
        job.pk, attempt=2, outcome=outcome, error=None, worker="w2"
    ) == ("succeeded")
    assert_succeeded_once(
        job, org, runs_expected=[(str(job.pk), "failed"), (f"{job.pk}#2", "succeeded")]
    )


def test_a_spooled_failure_is_recorded_released_while_the_attempt_still_holds_the_job(
    monkeypatch,
):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org, "a cat [fail]")
    real_release = execution.hold_release
    cuts = {"n": 3}

    def cut_release(**kwargs):
        if cuts["n"]:
            cuts["n"] -= 1
            terminate(connection.connection.info.backend_pid)
        return real_release(**kwargs)

    monkeypatch.setattr(execution, "hold_release", cut_release)
    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"
    assert spool.results_drain() == {"recorded": 1, "stale": 0, "kept": 0}
    job.refresh_from_db()
    assert (job.status, job.credits_charged, releases(job), captures(job)) == (
        JobStatus.FAILED,
        D(0),
        1,
        0,
    )
    assert runs(job) == [(str(job.pk), "failed")]
    assert account_of(org).held == D(0)
    assert ledger_drift() == []


def test_a_drain_while_the_database_is_still_away_keeps_the_files(monkeypatch):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    cut = CutAtCapture(monkeypatch, cuts=4)
    assert services.generation_run(job_id=job.pk, worker="w1") == "spooled"

    assert spool.results_drain() == {"recorded": 0, "stale": 0, "kept": 1}
    assert spooled() == [f"{job.pk}-1.json"]
    assert spool.results_drain() == {"recorded": 1, "stale": 0, "kept": 0}
    assert cut.calls == 5
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])


def test_a_connection_terminated_at_the_claim_is_retried_and_the_job_runs_once(monkeypatch):
    """The claim's transaction loses its connection (seen in bench/chaos.py: the job stayed
    queued and its message was acked, so it waited for the reaper): it is tried again on a
    fresh connection and the job runs in this delivery, charged once."""
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)
    real_watermark = execution.job_watermark
    cuts = {"left": 1, "calls": 0}

    def watermark_after_a_cut(job_):
        cuts["calls"] += 1
        if cuts["left"]:
            cuts["left"] -= 1
            terminate(connection.connection.info.backend_pid)
        return real_watermark(job_)

    monkeypatch.setattr(execution, "job_watermark", watermark_after_a_cut)

    assert services.generation_run(job_id=job.pk, worker="w1") == "succeeded"

    assert cuts["calls"] == 2
    assert_succeeded_once(job, org, runs_expected=[(str(job.pk), "succeeded")])


def test_a_claim_that_keeps_losing_its_connection_leaves_the_job_queued(monkeypatch):
    org = make_org(plan="studio")
    make_ai_model(credits="5")
    job = submit(org)

    def always_cut(job_):
        terminate(connection.connection.info.backend_pid)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # raises: the backend is gone

    monkeypatch.setattr(execution, "job_watermark", always_cut)

    with pytest.raises(execution.OperationalError):
        services.generation_run(job_id=job.pk, worker="w1")

    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)
    assert runs(job) == []
    assert account_of(org).held == D(5)
    assert ledger_drift() == []
