"""Generations: prices, submission, the run on a GPU backend, cancel, and the reaper.

Celery delivers at least once, so every step here is idempotent: a job moves
`queued → running` once per attempt under a row lock, and is charged (captured) or released
exactly once, in the same transaction as its terminal status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import jsonschema
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import APIKey, Organization, QueuePriority, User
from accounts.services import audit_record
from config.errors import IdempotencyConflict, ServerBusy, ValidationError
from credits import ledger
from credits.money import parse_credits
from credits.services import spend_authorize
from generations.backends import BackendError, RunRequest, get_backend
from generations.models import AIModel, CreditRate, Job, JobEvent, JobStatus
from infra_costs import runs as gpu_runs
from infra_costs.models import RunStatus

logger = logging.getLogger(__name__)

# Redis priorities: lower numbers are served first.
PRIORITY_BY_TIER = {
    QueuePriority.DEDICATED: 0,
    QueuePriority.HIGHEST: 1,
    QueuePriority.HIGH: 3,
    QueuePriority.NORMAL: 5,
    QueuePriority.LOW: 8,
}
ALWAYS_ACCEPTED = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
}


def queue_for_pool(pool_slug: str) -> str:
    return f"gpu.{pool_slug}"


# --- Prices -----------------------------------------------------------------------------------


def rate_current(*, model: AIModel, now: datetime | None = None) -> CreditRate | None:
    now = now or timezone.now()
    return model.rates.filter(effective_from__lte=now).order_by("-effective_from").first()


@transaction.atomic
def rate_set(
    *,
    model: AIModel,
    credits,
    reason: str,
    actor: User | None,
    effective_from: datetime | None = None,
) -> CreditRate:
    """A new price version (never an edit): who, when and why are kept."""
    amount = parse_credits(credits, field="credits")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the price changes.", errors={"reason": ["Required."]})
    effective_from = effective_from or timezone.now()
    previous = rate_current(model=model, now=effective_from)
    rate = CreditRate.objects.create(
        model=model, credits=amount, effective_from=effective_from, set_by=actor, reason=reason
    )
    audit_record(
        action="credit_rate.set",
        actor=actor,
        target=rate,
        data={
            "model": model.slug,
            "from": str(previous.credits) if previous else None,
            "to": str(rate.credits),
            "effective_from": effective_from.isoformat(),
            "reason": reason,
        },
    )
    return rate


# --- Parameters -------------------------------------------------------------------------------


def params_schema_effective(model: AIModel) -> dict:
    """The JSON Schema `params` is validated against: the model's own, plus the `prompt` and
    `seed` every model accepts."""
    schema = dict(model.params_schema or {"type": "object"})
    properties = dict(schema.get("properties") or {})
    for name, spec in ALWAYS_ACCEPTED.items():
        properties.setdefault(name, spec)
    schema["properties"] = properties
    schema.setdefault("type", "object")
    return schema


def params_validate(*, model: AIModel, params) -> dict:
    """`params` against the model's JSON Schema, which always accepts `prompt` and `seed`."""
    if not isinstance(params, dict):
        raise ValidationError(
            "params must be a JSON object.", errors={"params": ["Not an object."]}
        )
    validator = jsonschema.Draft202012Validator(params_schema_effective(model))
    problems = sorted(validator.iter_errors(params), key=lambda e: list(e.path))
    if problems:
        errors: dict[str, list[str]] = {}
        for problem in problems:
            path = ".".join(str(p) for p in problem.absolute_path)
            errors.setdefault(f"params.{path}" if path else "params", []).append(problem.message)
        first_field, first_messages = next(iter(errors.items()))
        raise ValidationError(f"{first_field}: {first_messages[0]}", errors=errors)
    return params


def params_hash(params: dict) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fingerprint(model_slug: str, params: dict) -> str:
    return hashlib.sha256(f"{model_slug}\n{params_hash(params)}".encode()).hexdigest()


# --- Events -----------------------------------------------------------------------------------


def _event(job: Job, status: str, *, at: datetime, message: str = "", worker: str = "") -> None:
    JobEvent.objects.create(
        job=job, status=status, at=at, node=job.node, worker=worker[:255], message=message[:1000]
    )


# --- Submission -------------------------------------------------------------------------------


def _server_busy(*, organization: Organization, model: AIModel) -> None:
    plan = organization.subscription.plan
    if plan.queue_priority != QueuePriority.LOW or model.pool_id is None:
        return
    queued = Job.objects.filter(model__pool_id=model.pool_id, status=JobStatus.QUEUED).count()
    if queued >= settings.GENERATIONS_FREE_TIER_MAX_QUEUED:
        retry = settings.GENERATIONS_SERVER_BUSY_RETRY_AFTER_S
        raise ServerBusy(
            f"The {model.name} queue is full ({queued} jobs waiting). Retry in {retry} s, "
            "or upgrade for priority access.",
            headers={"Retry-After": str(retry)},
        )


def _cached_result(
    *, organization: Organization, model: AIModel, phash: str, now: datetime
) -> Job | None:
    ttl = settings.GENERATIONS_RESULT_CACHE_TTL_S
    if ttl <= 0:
        return None
    return (
        Job.objects.filter(
            organization=organization,
            model=model,
            params_hash=phash,
            status=JobStatus.SUCCEEDED,
            cached=False,
            finished_at__gte=now - timedelta(seconds=ttl),
        )
        .order_by("-finished_at")
        .first()
    )


def generation_submit(
    *,
    organization: Organization,
    model_slug: str,
    params,
    api_key: APIKey | None = None,
    user: User | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Accept a generation: validate, check quotas and hold the pinned price (one ledger
    call), create the job `queued`, enqueue it on commit. Returns (job, created).

    Same Idempotency-Key and same request → the same job (created False); same key with a
    different request → IdempotencyConflict. A refusal writes nothing.
    """
    now = now or timezone.now()
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 255:
            raise ValidationError(
                "Idempotency-Key must be 1–255 characters.",
                errors={"Idempotency-Key": ["1–255 characters."]},
            )
    if not isinstance(model_slug, str) or not model_slug:
        raise ValidationError("model is required.", errors={"model": ["Required."]})
    fingerprint = _fingerprint(model_slug, params if isinstance(params, dict) else {"_": params})
    if idempotency_key is not None:
        existing = Job.objects.filter(
            organization=organization, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyConflict()
            return existing, False
    model = AIModel.objects.select_related("pool").filter(slug=model_slug, is_active=True).first()
    if model is None:
        raise ValidationError(f"Unknown model {model_slug!r}.", errors={"model": ["Unknown."]})
    params = params_validate(model=model, params=params)
    phash = params_hash(params)
    if model.pool_id is None:
        raise ValidationError(f"{model.name} has no GPU pool to run on.")

    try:
        with transaction.atomic():
            job = _accept(
                organization=organization,
                model=model,
                params=params,
                phash=phash,
                api_key=api_key,
                user=user,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                now=now,
            )
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the unique constraint.
        if idempotency_key is None:
            raise
        existing = Job.objects.get(organization=organization, idempotency_key=idempotency_key)
        if existing.request_fingerprint != fingerprint:
            raise IdempotencyConflict() from None
        return existing, False
    return job, True


def _accept(
    *, organization, model, params, phash, api_key, user, idempotency_key, fingerprint, now
) -> Job:
    job_id = uuid.uuid4()
    base = {
        "id": job_id,
        "organization": organization,
        "model": model,
        "params": params,
        "params_hash": phash,
        "api_key": api_key,
        "created_by": user if user is not None and user.is_authenticated else None,
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
        "created_at": now,
    }
    source = _cached_result(organization=organization, model=model, phash=phash, now=now)
    if source is not None:
        return _accept_cached(
            base=base,
            source=source,
            model=model,
            organization=organization,
            api_key=api_key,
            now=now,
        )

    _server_busy(organization=organization, model=model)
    rate = rate_current(model=model, now=now)
    if rate is None:
        raise ValidationError(f"{model.name} has no price yet.", errors={"model": ["No price."]})
    hold = spend_authorize(
        organization=organization,
        amount=rate.credits,
        key=f"job:{job_id}",
        api_key=api_key,
        metadata={
            "model": model.slug,
            "job": str(job_id),
            "description": f"{model.name} generation",
        },
        now=now,
    )
    plan = organization.subscription.plan
    job = Job.objects.create(
        **base,
        rate=rate,
        hold=hold,
        credits_held=hold.amount,
        priority=PRIORITY_BY_TIER.get(plan.queue_priority, 5),
        enqueued_at=now,
    )
    _event(job, JobStatus.QUEUED, at=now, message=f"accepted at {rate.credits} credits")
    transaction.on_commit(
        lambda: enqueue(job_id=job.pk, pool_slug=model.pool.slug, priority=job.priority)
    )
    return job


def _accept_cached(*, base, source: Job, model: AIModel, organization, api_key, now) -> Job:
    price = model.cache_price_credits
    hold = None
    if price > 0:
        hold = spend_authorize(
            organization=organization,
            amount=price,
            key=f"job:{base['id']}",
            api_key=api_key,
            metadata={
                "model": model.slug,
                "job": str(base["id"]),
                "cached": True,
                "description": f"{model.name} generation (cached)",
            },
            now=now,
        )
        ledger.hold_capture(hold=hold, now=now)
    job = Job.objects.create(
        **base,
        status=JobStatus.SUCCEEDED,
        hold=hold,
        credits_held=price,
        credits_charged=price,
        cached=True,
        cached_from=source,
        result=source.result,
        started_at=now,
        finished_at=now,
    )
    _event(job, JobStatus.QUEUED, at=now, message="accepted")
    _event(job, JobStatus.SUCCEEDED, at=now, message=f"served from the cache of job {source.pk}")
    return job


def enqueue(*, job_id, pool_slug: str, priority: int) -> bool:
    """Publish the run task. A broker that is down leaves the job queued: the reaper publishes
    it again later. Returns whether publishing worked."""
    from generations.tasks import run_generation

    try:
        run_generation.apply_async(
            args=[str(job_id)],
            queue=queue_for_pool(pool_slug),
            priority=priority,
            retry=True,
            retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
        return True
    except Exception:
        logger.exception("Could not publish job %s; the reaper will retry", job_id)
        return False


# --- Cancel -----------------------------------------------------------------------------------


@transaction.atomic
def generation_cancel(*, job: Job, actor: User | None = None, now: datetime | None = None) -> Job:
    """Cancel a queued job, releasing its hold. Cancelling a cancelled job changes nothing."""
    now = now or timezone.now()
    job = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
    if job.status == JobStatus.CANCELLED:
        return job
    if job.status != JobStatus.QUEUED:
        raise ValidationError(
            f"Only queued jobs can be cancelled; this one is {job.status}.",
            errors={"status": [f"Job is {job.status}."]},
        )
    job.status = JobStatus.CANCELLED
    job.finished_at = now
    job.credits_charged = Decimal(0)
    job.save(update_fields=["status", "finished_at", "credits_charged"])
    if job.hold_id:
        ledger.hold_release(
            hold=job.hold, reason="cancelled before it started", actor=actor, now=now
        )
    _event(job, JobStatus.CANCELLED, at=now, message="cancelled")
    return job


# --- Running ----------------------------------------------------------------------------------


def _run_external_id(job: Job, attempt: int) -> str:
    return str(job.pk) if attempt <= 1 else f"{job.pk}#{attempt}"


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.GENERATIONS_LEASE_S)


def _claim(job_id, *, worker: str, now: datetime):
    """Under the row lock: move the job to running (a new attempt) or say why not."""
    job = (
        Job.objects.select_for_update(of=("self",))
        .select_related("model", "model__pool")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        return None, "missing"
    if job.status == JobStatus.RUNNING:
        if job.lease_expires_at is None or job.lease_expires_at > now:
            return None, "running elsewhere"
        # The worker running it is gone (its lease lapsed): this delivery takes over.
        gpu_runs.run_finished(
            external_id=_run_external_id(job, job.attempts),
            status=RunStatus.FAILED,
            finished_at=now,
        )
        if job.attempts >= settings.GENERATIONS_MAX_ATTEMPTS:
            _fail(
                job,
                code="worker_lost",
                message="The GPU worker was lost repeatedly.",
                customer_fault=False,
                now=now,
                worker=worker,
            )
            return None, "gave up"
        _event(
            job,
            JobStatus.RUNNING,
            at=now,
            worker=worker,
            message="restarted: the previous worker was lost",
        )
    elif job.status != JobStatus.QUEUED:
        return None, f"already {job.status}"
    backend = get_backend(job.model.backend)
    request = RunRequest(
        job_id=str(job.pk),
        model_slug=job.model.slug,
        pool_slug=job.model.pool.slug,
        params=job.params,
        backend_config=job.model.backend_config or {},
        timeout_s=job.model.max_runtime_s,
    )
    try:
        node = backend.pick_node(request)
    except BackendError as exc:  # e.g. no node configured for the pool: fail, don't loop
        _fail(job, code=exc.code, message=exc.message, customer_fault=False, now=now, worker=worker)
        return None, "failed"
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.node = node
    job.started_at = now
    job.lease_expires_at = _lease(now)
    job.save(update_fields=["status", "attempts", "node", "started_at", "lease_expires_at"])
    if job.attempts == 1:
        _event(job, JobStatus.RUNNING, at=now, worker=worker, message=f"started on {node}")
    gpu_runs.run_started(
        external_id=_run_external_id(job, job.attempts),
        model_slug=job.model.slug,
        pool=job.model.pool,
        node_name=node,
        started_at=now,
    )
    return (job, backend, request), "claimed"


class _Heartbeat:
    """Extends a running job's lease while its backend call blocks, so a dead worker is
    noticed within GENERATIONS_LEASE_S and a live slow one never is."""

    def __init__(self, job_id, attempt: int):
        self.job_id, self.attempt = job_id, attempt
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = max(0.5, settings.GENERATIONS_LEASE_S / 3)
        try:
            while not self.stop.wait(interval):
                Job.objects.filter(
                    pk=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt
                ).update(lease_expires_at=_lease(timezone.now()))
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
    with transaction.atomic():
        claimed, why = _claim(job_id, worker=worker, now=timezone.now())
    if claimed is None:
        return why
    job, backend, request = claimed
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
    return _finish(job.pk, attempt=attempt, outcome=outcome, error=error, worker=worker)


@transaction.atomic
def _finish(job_id, *, attempt: int, outcome, error: BackendError | None, worker: str) -> str:
    now = timezone.now()
    job = Job.objects.select_for_update(of=("self",)).select_related("model").get(pk=job_id)
    if job.status != JobStatus.RUNNING or job.attempts != attempt:
        return "stale"  # the reaper or another attempt decided meanwhile
    if error is None:
        finished = min(outcome.finished_at or now, now)
        job.status = JobStatus.SUCCEEDED
        job.result = outcome.output
        job.finished_at = now
        job.lease_expires_at = None
        if job.hold_id:
            ledger.hold_capture(hold=job.hold, now=now)
        job.credits_charged = job.credits_held
        job.save(
            update_fields=["status", "result", "finished_at", "lease_expires_at", "credits_charged"]
        )
        gpu_runs.run_finished(
            external_id=_run_external_id(job, attempt),
            status=RunStatus.SUCCEEDED,
            finished_at=finished,
            started_at=outcome.started_at,
        )
        _event(
            job,
            JobStatus.SUCCEEDED,
            at=now,
            worker=worker,
            message=f"charged {job.credits_charged} credits",
        )
        return "succeeded"
    _fail(
        job,
        code=error.code,
        message=error.message,
        customer_fault=error.customer_fault,
        now=now,
        worker=worker,
    )
    gpu_runs.run_finished(
        external_id=_run_external_id(job, attempt),
        status=RunStatus.FAILED,
        finished_at=min(error.finished_at or now, now),
        started_at=error.started_at,
    )
    return "failed"


def _fail(
    job: Job, *, code: str, message: str, customer_fault: bool, now: datetime, worker: str = ""
) -> None:
    """Terminal failure: charged when it is the customer's fault, released otherwise."""
    job.status = JobStatus.FAILED
    job.error = message[:1000]
    job.error_code = code[:64]
    job.finished_at = now
    job.lease_expires_at = None
    if job.hold_id:
        if customer_fault:
            ledger.hold_capture(hold=job.hold, now=now)
            job.credits_charged = job.credits_held
        else:
            ledger.hold_release(hold=job.hold, reason=f"job failed: {code}", now=now)
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
    _event(
        job,
        JobStatus.FAILED,
        at=now,
        worker=worker,
        message=f"{code}: {message}" + (" (charged)" if customer_fault else " (released)"),
    )


# --- Reaper -----------------------------------------------------------------------------------


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Nothing lost: publish again jobs queued for longer than GENERATIONS_REQUEUE_AFTER_S
    (accepted while the broker was down, or lost with a dead worker's prefetch), and fail and
    release running jobs whose worker is gone (lease lapsed). Periodic task; idempotent."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.GENERATIONS_REQUEUE_AFTER_S)
    stale_queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=horizon)
        .select_related("model__pool")
        .order_by("priority", "created_at")[:1000]
    )
    requeued = 0
    for job in stale_queued:
        # Conditional: a concurrent reaper or a worker that just started it wins.
        if Job.objects.filter(
            pk=job.pk, status=JobStatus.QUEUED, enqueued_at=job.enqueued_at
        ).update(enqueued_at=now):
            requeued += enqueue(job_id=job.pk, pool_slug=job.model.pool.slug, priority=job.priority)
    lost = 0
    lost_ids = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job_id in list(lost_ids.values_list("pk", flat=True)[:1000]):
        with transaction.atomic():
            job = Job.objects.select_for_update(of=("self",)).select_related("model").get(pk=job_id)
            if job.status != JobStatus.RUNNING or job.lease_expires_at >= now:
                continue
            _fail(
                job,
                code="worker_lost",
                message="The GPU worker running this job was lost.",
                customer_fault=False,
                now=now,
            )
            gpu_runs.run_finished(
                external_id=_run_external_id(job, job.attempts),
                status=RunStatus.FAILED,
                finished_at=now,
            )
            lost += 1
    return {"requeued": requeued, "failed_lost": lost}
