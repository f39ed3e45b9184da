"""Submission: validate a request, apply the quotas, hold the pinned price, create the job
`queued` (idempotently, per Idempotency-Key) and publish it to its pool's queue on commit.

A request without `seed` gets one drawn at random (`secrets`) and recorded in the job's params,
so the customer can see it and reuse it. The Idempotency-Key compares the body as sent (the
request fingerprint has no drawn seed), and the result cache compares the params as run (with
the drawn seed), so two seedless requests are two different random draws, never a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jsonschema
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from accounts.models import APIKey, FairUseThrottle, Organization, QueuePriority, User
from config.errors import IdempotencyConflict, ServerBusy, ValidationError
from config.web.formats import format_credits
from credits.services import fair_use_start, hold_capture, spend_authorize
from generations.entitlements import entitlements_check
from generations.models import AIModel, Job, JobStatus
from generations.price_tables import price_for
from generations.selectors import model_params_schema
from generations.services.events import job_event_add, job_insert_with_event
from generations.services.submission_lookup import (
    job_by_idempotency_key,
    job_publish_record,
    rate_and_override_for_slug,
)
from generations.validation import SEED_MAX, SEED_MIN, params_errors, truncated
from infra_costs import fleet

logger = logging.getLogger(__name__)

# Redis priorities: lower numbers are served first.
PRIORITY_BY_TIER = {
    QueuePriority.DEDICATED: 0,
    QueuePriority.HIGHEST: 1,
    QueuePriority.HIGH: 3,
    QueuePriority.NORMAL: 5,
    QueuePriority.LOW: 8,
}
# Jobs of a fair-use unlimited plan past its cap, throttled to the lowest priority: after
# every tier, free included.
FAIR_USE_THROTTLED_PRIORITY = 9


def job_watermark(job: Job) -> bool:
    """Whether the job's outputs are watermarked: the plan's `watermark` flag as it was when
    the job was accepted (kept in its hold's metadata), else the organization's plan now."""
    if job.hold_id is not None and "watermark" in (job.hold.metadata or {}):
        return bool(job.hold.metadata["watermark"])
    subscription = getattr(job.organization, "subscription", None)
    return bool(subscription is not None and subscription.plan.watermark)


def queue_for_pool(pool_slug: str) -> str:
    return f"gpu.{pool_slug}"


# --- Parameters -------------------------------------------------------------------------------


def params_validate(*, model: AIModel, params) -> dict:
    """`params` against the model's JSON Schema, which always accepts `prompt` and `seed`.
    Refusals are written for people (`generations.validation`): they name the field and never
    echo the value."""
    if not isinstance(params, dict):
        raise ValidationError(
            "params must be a JSON object.", errors={"params": ["Must be a JSON object."]}
        )
    schema = model_params_schema(model)
    errors = params_errors(schema=schema, params=params)
    if errors:
        messages = [m for ms in errors.values() for m in ms]
        detail = messages[0]
        if len(messages) > 1:
            more = len(messages) - 1
            detail += f" (and {more} more problem{'s' if more != 1 else ''})"
        raise ValidationError(detail, errors=errors)
    return params


def params_with_seed(*, model: AIModel, params: dict) -> dict:
    """`params` with a random `seed` when the request has none (and the model's schema takes an
    integer seed): drawn with `secrets` within the schema's bounds, so the job records the seed
    it ran with. Params that already have a seed are returned as they are."""
    if "seed" in params:
        return params
    schema = model_params_schema(model)
    spec = (schema.get("properties") or {}).get("seed")
    if not isinstance(spec, dict) or spec.get("type") not in ("integer", None):
        return params
    low, high = SEED_MIN, SEED_MAX
    if _is_int(spec.get("minimum")):
        low = max(low, spec["minimum"])
    if _is_int(spec.get("maximum")):
        high = min(high, spec["maximum"])
    if high < low:
        return params
    seed = low + secrets.randbelow(high - low + 1)
    # The rest of `params` is already valid: only the seed's own rules (an enum, multipleOf…)
    # can refuse the drawn value.
    if not jsonschema.Draft202012Validator(spec).is_valid(seed):
        return params
    return {**params, "seed": seed}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def params_hash(params: dict) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_fingerprint(model_slug: str, params) -> str:
    """What the Idempotency-Key compares: the model and the params as sent (no drawn seed)."""
    params = params if isinstance(params, dict) else {"_": params}
    return hashlib.sha256(f"{model_slug}\n{params_hash(params)}".encode()).hexdigest()


def job_seed_drawn(job: Job) -> bool:
    """Whether the job's `seed` was drawn at random (the request had none): its fingerprint is
    that of its params without the seed."""
    params = job.params if isinstance(job.params, dict) else {}
    if "seed" not in params or not job.request_fingerprint:
        return False
    sent = {k: v for k, v in params.items() if k != "seed"}
    return job.request_fingerprint == request_fingerprint(job.model.slug, sent)


# --- Submission -------------------------------------------------------------------------------


def _server_busy(*, organization: Organization, model: AIModel) -> None:
    plan = organization.subscription.plan
    if plan.queue_priority != QueuePriority.LOW or model.pool_id is None:
        return
    policy = fleet.pool_policy(model.pool_id)
    if policy is not None:
        # A fleet-managed pool refuses free-tier work while its oldest job waits too long.
        oldest = (
            Job.objects.filter(model__pool_id=model.pool_id, status=JobStatus.QUEUED)
            .order_by("enqueued_at")
            .values_list("enqueued_at", flat=True)
            .first()
        )
        wait = (timezone.now() - oldest).total_seconds() if oldest else 0
        if wait > policy.free_tier_max_wait_s:
            retry = settings.GENERATIONS_SERVER_BUSY_RETRY_AFTER_S
            raise ServerBusy(
                f"{model.name} is busy: jobs are waiting over {policy.free_tier_max_wait_s} s. "
                f"Retry in {retry} s, or upgrade for priority access.",
                headers={"Retry-After": str(retry)},
            )
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


def request_model(*, model_slug) -> AIModel:
    """The active model a request names (the submission's and the quote's check)."""
    if not isinstance(model_slug, str) or not model_slug:
        raise ValidationError("model is required.", errors={"model": ["Required."]})
    model = AIModel.objects.select_related("pool").filter(slug=model_slug, is_active=True).first()
    if model is None:
        raise ValidationError(
            f"Unknown model “{truncated(model_slug, 60)}”.", errors={"model": ["Unknown model."]}
        )
    return model


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
        if not idempotency_key.isprintable():  # a NUL can't even be stored
            raise ValidationError(
                "Idempotency-Key must not contain control characters.",
                errors={"Idempotency-Key": ["No control characters."]},
            )
    if not isinstance(model_slug, str) or not model_slug:
        raise ValidationError("model is required.", errors={"model": ["Required."]})
    fingerprint = request_fingerprint(model_slug, params)
    if idempotency_key is not None:
        existing = job_by_idempotency_key(organization_id=organization.pk, key=idempotency_key)
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyConflict()
            return existing, False
    # The model, its price in force and the organization's price override in force in one
    # statement (the model alone when it has no price: the refusal below, after the params'
    # checks, as before). Read at `now`, never cached: the price pinned is the one in force
    # at acceptance.
    rate, override = rate_and_override_for_slug(
        model_slug=model_slug, organization_id=organization.pk, now=now
    )
    model = rate.model if rate is not None else request_model(model_slug=model_slug)
    params = params_validate(model=model, params=params)
    params = params_with_seed(model=model, params=params)
    phash = params_hash(params)
    if model.pool_id is None:
        raise ValidationError(f"{model.name} has no GPU pool to run on.")
    # The plan's entitlements, before any quota (one place: generations.entitlements).
    entitlements_check(organization.subscription.plan, model, params)

    try:
        with transaction.atomic(durable=True):
            job = _accept(
                organization=organization,
                model=model,
                rate=rate,
                override=override,
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
    *,
    organization,
    model,
    rate,
    override,
    params,
    phash,
    api_key,
    user,
    idempotency_key,
    fingerprint,
    now,
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
    if rate is None:
        raise ValidationError(f"{model.name} has no price yet.", errors={"model": ["No price."]})
    # The price of these params under the pinned version (flat or a price table): the quote.
    # With the organization's contract price override in force now (the one place it applies;
    # read with the price above, at the same `now`).
    price = price_for(rate, params, organization_id=organization.pk, at=now, override=override)
    plan = organization.subscription.plan
    hold = spend_authorize(
        organization=organization,
        amount=price,
        key=f"job:{job_id}",
        api_key=api_key,
        user=base["created_by"],  # whose member and team budgets apply (credits.budgets)
        metadata={
            "model": model.slug,
            "job": str(job_id),
            "description": f"{model.name} generation",
            "watermark": plan.watermark,
        },
        now=now,
        savepoint=False,  # this durable block is the unit of work: a refusal aborts it
    )
    priority = PRIORITY_BY_TIER.get(plan.queue_priority, 5)
    message = f"accepted at {format_credits(price)} credits"
    start = now
    if plan.unlimited:
        message = "accepted (unlimited plan)"
        throttle = (hold.metadata or {}).get("fair_use")
        if throttle is not None:
            if throttle.get("mode") == FairUseThrottle.RATE:
                start = max(now, fair_use_start(hold) or now)
                message += (
                    "; fair-use cap reached: starts no earlier than "
                    f"{start.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
                )
            else:
                priority = FAIR_USE_THROTTLED_PRIORITY
                message += "; fair-use cap reached: runs at the lowest priority"
    job = Job(
        **base,
        rate=rate,
        hold=hold,
        credits_held=hold.amount,
        priority=priority,
        # A rate-throttled job is queued from its start time: the worker does not claim it
        # before (execution._claim), and the reaper counts its wait from then.
        enqueued_at=start,
    )
    # The job and its status log row in one statement (a CTE): one round trip.
    job_insert_with_event(job, JobStatus.QUEUED, at=now, message=message)
    delay = (start - now).total_seconds()
    transaction.on_commit(
        lambda: enqueue(
            job_id=job.pk,
            pool_slug=model.pool.slug,
            priority=job.priority,
            countdown=delay if delay > 0 else None,
        )
    )
    return job


def _accept_cached(*, base, source: Job, model: AIModel, organization, api_key, now) -> Job:
    price = model.cache_price_credits
    if organization.subscription.plan.unlimited:
        price = Decimal(0)  # a fair-use unlimited plan pays no credits, cached or not
    hold = None
    if price > 0:
        hold = spend_authorize(
            organization=organization,
            amount=price,
            key=f"job:{base['id']}",
            api_key=api_key,
            user=base["created_by"],
            metadata={
                "model": model.slug,
                "job": str(base["id"]),
                "cached": True,
                "description": f"{model.name} generation (cached)",
            },
            now=now,
        )
        hold_capture(hold=hold, now=now)
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
    job_event_add(job, JobStatus.QUEUED, at=now, message="accepted")
    job_event_add(
        job, JobStatus.SUCCEEDED, at=now, message=f"served from the cache of job {source.pk}"
    )
    return job


def enqueue(*, job_id, pool_slug: str, priority: int, countdown: float | None = None) -> bool:
    """Publish the run task (`countdown`: seconds before a worker may take it — a
    rate-throttled job). Returns whether publishing worked.

    Never raises (it runs on commit, after the job and its hold are saved): a broker that is
    down leaves the job queued — accepted, held, not charged — and the reaper publishes it
    again when the broker is back (docs/reliability.md, "Degraded modes"). PostgreSQL, not
    the broker, is the source of truth for what was accepted."""
    from generations.tasks import run_generation  # the tasks module imports the services

    args = [str(job_id)]
    try:
        run_generation.apply_async(
            args=args,
            # What Celery's saferepr would write in the message's headers, without its cost.
            argsrepr=repr(args),
            kwargsrepr="{}",
            queue=queue_for_pool(pool_slug),
            priority=priority,
            countdown=countdown,
            retry=True,
            retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
        _publish_recorded(job_id, published=True)
        return True
    except Exception as exc:
        # One line per job, no traceback: during a broker outage every submission lands here.
        logger.warning(
            "Could not publish job %s (%s: broker unreachable?); it stays queued and the "
            "reaper publishes it",
            job_id,
            exc.__class__.__name__,
        )
        _publish_recorded(job_id, published=False)
        return False


def _publish_recorded(job_id, *, published: bool) -> None:
    """Publish bookkeeping for the reaper (`generations.services.reaper`): `published_at` is
    when the job's message last reached the broker (NULL after a failed publish: the reaper
    publishes it at its next run) and `publish_count` how many were published in all. Never
    raises: the broker's own state is what the reaper checks; this only tells it where to
    look."""
    try:
        # One statement (fixed SQL). In autocommit (on commit of a request's transaction) it is
        # its own transaction: no BEGIN/COMMIT round trips around it. Inside a transaction a
        # savepoint keeps a failure from breaking the caller's.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            job_publish_record(job_id=job_id, published=published, at=timezone.now())
    except DatabaseError:
        logger.warning("Could not record the publish of job %s", job_id, exc_info=True)
