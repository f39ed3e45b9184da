"""Execution: a worker runs one job (the Celery task's body).

Celery delivers at least once, so every step is idempotent: a job moves `queued → running`
once per attempt under a row lock (the claim), runs outside any transaction while a heartbeat
renews its lease, and is charged (captured) or released exactly once, in the same transaction
as its terminal status (the finish).

The finish survives connection loss (`_finish_recorded`): a terminal transaction that fails with
a connection error is retried on a fresh connection, a bounded number of times with backoff —
idempotent, since the finish checks status and attempt under the row lock — and a result that
still can't be recorded is kept in the local spool (`generations.services.spool`) and recorded
later by the worker's next task or the reaper. See docs/reliability.md, "Finishing completed work".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from config import logs
from config.errors import ServiceError
from config.web.formats import format_credits
from credits.models import HoldStatus
from credits.services import hold_capture, hold_extend, hold_release
from generations.backends import BackendError, RunRequest, get_backend
from generations.models import Job, JobStatus
from generations.price_tables import price_for, priced_units
from generations.services import batching, spool
from generations.services.events import job_event_add, job_save_with_event
from generations.services.execution_lookup import job_locked_for_claim, job_locked_for_finish
from generations.services.reconnect import on_fresh_connection
from generations.services.submission import job_watermark
from infra_costs import fleet
from infra_costs import services as infra_costs_services
from infra_costs.models import GpuRun, RunStatus

logger = logging.getLogger(__name__)


def run_external_id(job: Job, attempt: int) -> str:
    """The GPU-run id of one attempt of a job (infra_costs knows jobs only by this id)."""
    return str(job.pk) if attempt <= 1 else f"{job.pk}#{attempt}"


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.GENERATIONS_LEASE_S)


def _claim(job_id, *, worker: str, now: datetime):
    """Under the row lock: move the job to running (a new attempt) or say why not."""
    # One SELECT, fixed SQL (issue 16: the ORM's compiler cost more than the query): the job
    # locked, with what the claim reads (model, pool, organization, hold) and whether its pool
    # is fleet-managed (`job.pool_managed`).
    job = job_locked_for_claim(job_id)
    if job is None:
        return None, "missing"
    logs.task_context_bind(organization=job.organization.slug)  # on the task's log lines
    if job.status == JobStatus.RUNNING:
        if job.lease_expires_at is None or job.lease_expires_at > now:
            return None, "running elsewhere"
        # The worker running it is gone (its lease lapsed; a redelivery got here before the
        # reaper): the job is requeued as the reaper would, and this delivery runs it.
        if not job_worker_lost(job, now=now, worker=worker):
            return None, "gave up"
    if job.status != JobStatus.QUEUED:
        return None, f"already {job.status}"
    if job.enqueued_at is not None and job.enqueued_at > now:
        # A rate-throttled job (fair-use plan past its cap) published early (a redelivery):
        # not before its start time; its delayed message, or the reaper after it, runs it.
        return None, "throttled"
    backend = get_backend(job.model.backend)
    request = RunRequest(
        job_id=str(job.pk),
        model_slug=job.model.slug,
        pool_slug=job.model.pool.slug,
        params=job.params,
        backend_config=job.model.backend_config or {},
        timeout_s=job.model.max_runtime_s,
        watermark=job_watermark(job),
    )
    managed = job.pool_managed
    if managed:
        # A fleet-managed pool: only a hot node with a free slot takes the job; with none,
        # the job stays queued and is dispatched again when a node frees up or turns hot.
        node = fleet.node_acquire(pool_id=job.model.pool_id, now=now)
        if node is None:
            return None, "waiting for a node"
    else:
        try:
            node = backend.pick_node(request)
        except BackendError as exc:  # e.g. no node configured for the pool: fail, don't loop
            job_fail(
                job,
                code=exc.code,
                message=exc.message,
                customer_fault=False,
                now=now,
                worker=worker,
            )
            return None, "failed"
    if job.hold_id and not hold_extend(
        hold=job.hold, until=now + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
    ):
        # The hold was swept as stale (or released) while the job waited: running it now would
        # do GPU work that can never be charged. (A node slot taken above is given back by the
        # rollback-free path: no GPU run was recorded, so `node_free` puts the node back.)
        job_fail(
            job,
            code="hold_expired",
            message="The credits held for this job were released before it could start.",
            customer_fault=False,
            now=now,
            worker=worker,
        )
        if managed:
            _node_freed(node, now)
        return None, "failed"
    attempt_start(
        job,
        node=node,
        now=now,
        worker=worker,
        message=f"started on {node}"
        if job.attempts == 0
        else f"attempt {job.attempts + 1} of {settings.GENERATIONS_MAX_ATTEMPTS} started on {node}",
    )
    return (job, backend, request), "claimed"


def attempt_start(job: Job, *, node: str, now: datetime, worker: str, message: str) -> None:
    """A new attempt of a queued job (locked by the caller) starts on `node`: running with a
    lease, its status log row, its GPU run. The single claim and batch mates share it."""
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.node = node
    job.started_at = now
    job.lease_expires_at = _lease(now)
    job_save_with_event(  # the job's UPDATE and its status-log row in one statement
        job,
        update_fields=["status", "attempts", "node", "started_at", "lease_expires_at"],
        status=JobStatus.RUNNING,
        at=now,
        worker=worker,
        message=message,
    )
    infra_costs_services.gpu_run_start(
        external_id=run_external_id(job, job.attempts),
        model_slug=job.model.slug,
        pool=job.model.pool,
        node_name=node,
        started_at=now,
    )


class _Heartbeat:
    """Extends a running job's lease while its backend call blocks, so a dead worker is
    noticed within GENERATIONS_LEASE_S and a live slow one never is. `also`: the other
    (job id, attempt) pairs of a batch run in the same call."""

    def __init__(self, job_id, attempt: int, also: tuple = ()):
        self.jobs = [(job_id, attempt), *also]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = max(0.5, settings.GENERATIONS_LEASE_S / 3)
        which = Q()
        for job_id, attempt in self.jobs:
            which |= Q(pk=job_id, attempts=attempt)
        try:
            while not self.stop.wait(interval):
                try:
                    Job.objects.filter(which, status=JobStatus.RUNNING).update(
                        lease_expires_at=_lease(timezone.now())
                    )
                except (OperationalError, InterfaceError) as exc:
                    # The connection was lost (backend terminated, database restarting): drop
                    # it and beat again on a fresh one, instead of letting the lease lapse.
                    connection.close()
                    logger.warning("Heartbeat of job %s missed a beat: %s", self.jobs[0][0], exc)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


def generation_run(*, job_id, worker: str = "") -> str:
    """Run one job (the Celery task's body). Safe to call any number of times for one job:
    only a queued job (or a running one whose worker is gone) is run, and its outcome is
    recorded only by the attempt that claimed it. Returns what happened."""
    spool.results_drain_safe()  # results this host could not record earlier go in first
    claimed, why = _claim_recorded(job_id, worker=worker)
    if claimed is None:
        return why
    job, backend, request = claimed
    batch_size = batching.batch_size(job.model)
    if batch_size > 1 and hasattr(backend, "run_batch"):
        try:
            with transaction.atomic(durable=True):
                mates = batching.mates_claim(job, limit=batch_size - 1, worker=worker)
        except (OperationalError, InterfaceError) as exc:
            # The job itself is claimed: run it alone; the mates stay queued for the next one.
            connection.close()
            logger.warning("Batch mates of job %s not claimed: %s", job.pk, exc)
            mates = []
        if mates:
            return batching.batch_run(job, request, mates, backend=backend, worker=worker)
    attempt = job.attempts
    outcome = None
    error: BackendError | None = None
    with _Heartbeat(job.pk, attempt):
        try:
            outcome = backend.run(request, node=job.node)
        except BackendError as exc:
            error = exc
        except Exception as exc:  # a bug or a time limit: not the customer's fault
            logger.exception("Backend crashed on job %s", job.pk)
            error = BackendError(f"Internal error: {exc.__class__.__name__}", code="internal_error")
        # Still under the heartbeat: the lease stays live while the finish is retried.
        return _finish_recorded(
            job.pk, attempt=attempt, outcome=outcome, error=error, worker=worker
        )


CLAIM_TRIES = 3


def _claim_recorded(job_id, *, worker: str):
    """`_claim` in its own durable transaction, surviving connection loss: a claim whose
    connection was terminated rolled back whole (nothing claimed, no node taken), so it is
    tried again on a fresh connection, up to CLAIM_TRIES times. Only a queued job can be
    claimed, so a retry after a commit whose answer was lost answers "running elsewhere".
    When every try fails the error propagates: the task fails, the job stays queued and the
    reaper publishes it again."""

    @transaction.atomic(durable=True)
    def claim():
        return _claim(job_id, worker=worker, now=timezone.now())

    return on_fresh_connection(
        claim,
        tries=CLAIM_TRIES,
        what=f"Claim of job {job_id}",
        backoff_s=settings.GENERATIONS_FINISH_BACKOFF_S,
    )


def _finish_recorded(
    job_id,
    *,
    attempt: int,
    outcome,
    error: BackendError | None,
    worker: str,
    tries: int | None = None,
) -> str:
    """`_finish`, surviving connection loss: a terminal transaction that fails with a
    connection error (OperationalError, InterfaceError: the backend was terminated, the
    database restarted) is retried on a fresh connection up to GENERATIONS_FINISH_TRIES times
    in all, with exponential backoff and jitter from GENERATIONS_FINISH_BACKOFF_S. A retry after
    a commit whose answer was lost changes nothing (the finish checks status and attempt under
    the row lock). When every try fails, the result is kept in the spool and recorded later
    (`spool.results_drain`): returns "spooled". `tries=0` spools at once."""
    tries = settings.GENERATIONS_FINISH_TRIES if tries is None else tries
    result_at = timezone.now()
    for n in range(1, tries + 1):
        try:
            result = _finish(job_id, attempt=attempt, outcome=outcome, error=error, worker=worker)
        except (OperationalError, InterfaceError) as exc:
            connection.close()  # the next try opens a fresh connection
            logger.warning(
                "Finish of job %s attempt %s failed (try %s of %s): %s",
                job_id,
                attempt,
                n,
                tries,
                exc,
            )
            if n < tries:
                delay = settings.GENERATIONS_FINISH_BACKOFF_S * 2 ** (n - 1)
                time.sleep(min(delay, 10.0) * random.uniform(0.5, 1.0))
            continue
        if result == "stale" and n > 1:
            # Maybe our own earlier try committed and only its answer was lost.
            recorded = (
                Job.objects.filter(pk=job_id, attempts=attempt)
                .values_list("status", flat=True)
                .first()
            )
            if recorded in (JobStatus.SUCCEEDED, JobStatus.FAILED):
                return str(recorded)
        return result
    path = spool.result_keep(
        job_id=job_id,
        attempt=attempt,
        outcome=outcome,
        error=error,
        worker=worker,
        result_at=result_at,
    )
    logger.error(
        "Finish of job %s attempt %s could not be recorded: kept in %s", job_id, attempt, path
    )
    return "spooled"


@transaction.atomic(durable=True)
def _finish(
    job_id,
    *,
    attempt: int,
    outcome,
    error: BackendError | None,
    worker: str,
    late: bool = False,
) -> str:
    """Record an attempt's outcome, under the row lock, if that attempt still holds the job.
    `late` (a spooled result, see `spool.results_drain`): a success also wins when the attempt's
    lease lapsed meanwhile and the job was requeued with no newer attempt started."""
    now = timezone.now()
    # One SELECT, fixed SQL: the job locked, with what the finish reads (model, organization,
    # hold, rate). The job exists: this attempt claimed it (jobs are never deleted).
    job = job_locked_for_finish(job_id)
    if job is None:
        raise Job.DoesNotExist(f"Job {job_id} does not exist.")
    if late and job.status == JobStatus.QUEUED and job.attempts == attempt:
        return _finish_requeued(
            job, attempt=attempt, outcome=outcome, error=error, now=now, worker=worker
        )
    if job.status != JobStatus.RUNNING or job.attempts != attempt:
        return "stale"  # the reaper or another attempt decided meanwhile
    attempt_start_at = job.started_at  # its GPU run's recorded start (`attempt_start`)
    if error is None and job.hold_id and job.hold.status != HoldStatus.HELD:
        # The hold was swept as stale while the job ran (an attempt longer than the hold's
        # timeout): nothing can be charged, so the job fails instead of looping on capture.
        error = BackendError(
            "The credits held for this job expired before it finished; nothing was charged.",
            code="hold_expired",
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
        )
    if error is None:
        finished = min(outcome.finished_at or now, now)
        job.status = JobStatus.SUCCEEDED
        job.result = outcome.output
        job.finished_at = now
        job.lease_expires_at = None
        job.credits_charged = _charge(job, outcome, now=now)
        job_save_with_event(  # the job's UPDATE and its status-log row in one statement
            job,
            update_fields=[
                "status",
                "result",
                "finished_at",
                "lease_expires_at",
                "credits_charged",
                "actual_units",
            ],
            status=JobStatus.SUCCEEDED,
            at=now,
            worker=worker,
            message=_charged_message(job),
        )
        infra_costs_services.gpu_run_finish(
            external_id=run_external_id(job, attempt),
            status=RunStatus.SUCCEEDED,
            finished_at=finished,
            started_at=outcome.started_at,
            recorded_start=attempt_start_at,
        )
        _node_freed(job.node, now)
        return "succeeded"
    job_fail(
        job,
        code=error.code,
        message=error.message,
        customer_fault=error.customer_fault,
        now=now,
        worker=worker,
    )
    infra_costs_services.gpu_run_finish(
        external_id=run_external_id(job, attempt),
        status=RunStatus.FAILED,
        finished_at=min(error.finished_at or now, now),
        started_at=error.started_at,
        recorded_start=attempt_start_at,
    )
    _node_freed(job.node, now)
    return "failed"


def _finish_requeued(
    job: Job, *, attempt: int, outcome, error: BackendError | None, now: datetime, worker: str
) -> str:
    """A spooled success of an attempt taken for lost (its lease lapsed while the result waited
    in the spool; the job went back to `queued` and no newer attempt has started): the GPU did
    the work, so it is recorded — charged once from the same hold, and the attempt's GPU run,
    closed as failed at the lapse, corrected to succeeded. Its node was already freed at the
    lapse. A spooled failure is not recorded: the job's next attempt may still succeed."""
    if error is not None or (job.hold_id and job.hold.status != HoldStatus.HELD):
        return "stale"
    external_id = run_external_id(job, attempt)
    run = GpuRun.objects.filter(external_id=external_id).values("started_at").first()
    job.status = JobStatus.SUCCEEDED
    job.result = outcome.output
    job.node = outcome.node or job.node
    job.started_at = outcome.started_at or (run or {}).get("started_at") or job.started_at
    job.finished_at = now
    job.lease_expires_at = None
    job.credits_charged = _charge(job, outcome, now=now)
    job.save(
        update_fields=[
            "status",
            "result",
            "node",
            "started_at",
            "finished_at",
            "lease_expires_at",
            "credits_charged",
            "actual_units",
        ]
    )
    infra_costs_services.gpu_run_finish(
        external_id=external_id,
        status=RunStatus.SUCCEEDED,
        finished_at=min(outcome.finished_at or now, now),
        started_at=outcome.started_at,
        correct_lost=True,
        recorded_start=(run or {}).get("started_at"),
    )
    job_event_add(
        job,
        JobStatus.SUCCEEDED,
        at=now,
        worker=worker,
        message=f"charged {format_credits(job.credits_charged)} credits (attempt {attempt}, "
        "recorded late)",
    )
    return "succeeded"


def _charged_message(job: Job) -> str:
    message = f"charged {format_credits(job.credits_charged)} credits"
    if job.credits_charged < job.credits_held:
        message += f" of {format_credits(job.credits_held)} held (actual units; rest released)"
    return message


def _charge(job: Job, outcome, *, now: datetime) -> Decimal:
    """Capture a succeeded job's hold (in its terminal transaction) and return the charge: the
    hold, or — when its price follows the request and the backend reported the units it really
    produced — their price under the pinned version, at most the hold (the rest is released
    by the same capture). The reported units are kept on the job (`actual_units`)."""
    charge = job.credits_held
    units = getattr(outcome, "units", None) or {}
    rate = job.rate if job.rate_id else None
    if units and rate is not None and rate.price_table:
        used = priced_units(rate, units)
        job.actual_units = used or None
        try:
            price = price_for(
                rate,
                {**job.params, **used},
                organization_id=job.organization_id,
                at=job.created_at,  # the override in force at acceptance, like the rate
            )
            charge = min(price, job.credits_held)
        except ServiceError as exc:  # nonsense units from a backend: charge the quoted price
            logger.warning("Job %s: reported units not priced (%s)", job.pk, exc.detail)
            job.actual_units = None
    if job.hold_id:
        hold_capture(hold=job.hold, amount=charge, now=now)
    return charge


def _node_freed(node: str, now: datetime) -> None:
    """A job left its node (in the caller's transaction, after its GPU run closed): a managed
    node goes back to hot when idle, and after commit its pool's waiting jobs are dispatched."""
    if not node:
        return
    pool_id = fleet.node_free(node_name=node, now=now)
    if pool_id is not None:
        from generations.services.dispatch import jobs_dispatch_waiting

        transaction.on_commit(partial(jobs_dispatch_waiting, pool_ids=[pool_id]))


def job_fail(
    job: Job, *, code: str, message: str, customer_fault: bool, now: datetime, worker: str = ""
) -> None:
    """Terminal failure of a job locked by the caller, in the caller's transaction: charged
    when it is the customer's fault, released otherwise."""
    job.status = JobStatus.FAILED
    job.error = message[:1000]
    job.error_code = code[:64]
    job.finished_at = now
    job.lease_expires_at = None
    if job.hold_id and job.hold.status != HoldStatus.HELD:
        # The hold was swept as stale (or released) while the job ran: there is nothing left
        # to capture or release, so nothing is charged (found by the fault simulation, seed 2521).
        job.credits_charged = Decimal(0)
    elif job.hold_id:
        if customer_fault:
            hold_capture(hold=job.hold, now=now)
            job.credits_charged = job.credits_held
        else:
            hold_release(hold=job.hold, reason=f"job failed: {code}", now=now)
            job.credits_charged = Decimal(0)
    else:
        job.credits_charged = Decimal(0)
    job.save(
        update_fields=[
            "status",
            "error",
            "error_code",
            "finished_at",
            "lease_expires_at",
            "credits_charged",
        ]
    )
    job_event_add(
        job,
        JobStatus.FAILED,
        at=now,
        worker=worker,
        message=f"{code}: {message}" + (" (charged)" if customer_fault else " (released)"),
    )


def job_worker_lost(job: Job, *, now: datetime, worker: str = "") -> bool:
    """A running job whose lease lapsed: its worker is gone. Locked by the caller, in the
    caller's transaction. The lost attempt's GPU run is closed as failed at the lapse time (the
    node was busy with it until then, as far as anyone knows). The job goes back to `queued`
    for another attempt, keeping its hold (nothing is released or held again), or — when it had
    its GENERATIONS_MAX_ATTEMPTS — fails with `worker_lost` and its hold is released.

    Returns whether the job was requeued; the caller publishes it (or runs it). A late finish
    by the lost worker is refused by `_finish` (the job is no longer running that attempt)."""
    attempt = job.attempts
    lapsed_at = min(job.lease_expires_at or now, now)
    infra_costs_services.gpu_run_finish(
        external_id=run_external_id(job, attempt),
        status=RunStatus.FAILED,
        finished_at=lapsed_at,
        recorded_start=job.started_at,
    )
    _node_freed(job.node, now)
    limit = settings.GENERATIONS_MAX_ATTEMPTS
    if attempt >= limit:
        job_fail(
            job,
            code="worker_lost",
            message=f"The GPU worker running this job was lost on each of its {attempt} attempts.",
            customer_fault=False,
            now=now,
            worker=worker,
        )
        return False
    job_event_add(
        job,
        JobStatus.QUEUED,
        at=now,
        worker=worker,
        message=f"worker lost during attempt {attempt} of {limit}; requeued",
    )
    job.status = JobStatus.QUEUED
    job.node = ""
    job.started_at = None
    job.lease_expires_at = None
    job.enqueued_at = now
    job.save(update_fields=["status", "node", "started_at", "lease_expires_at", "enqueued_at"])
    return True
