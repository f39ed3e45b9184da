"""Reads of the generations app. Customer-facing reads are scoped to one organization: another
tenant's job is indistinguishable from a missing one (NotFound, never its data)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.models import Organization
from config.errors import NotFound, ValidationError
from generations.models import AIModel, CreditRate, Job, JobStatus
from infra_costs.fleet.signals import QueueSignals

# Every model accepts these in `params`, whatever its own schema says.
ALWAYS_ACCEPTED = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
}


def job_list(
    *, organization: Organization, status: str | None = None, model: str | None = None
) -> QuerySet[Job]:
    """The organization's jobs, newest first, optionally of one status and/or one model (slug).

    An unknown status is a ValidationError naming `status`; an unknown model slug simply
    matches nothing (jobs of retired models stay listable by their slug)."""
    jobs = Job.objects.filter(organization=organization).select_related("model__pool")
    if status:
        if status not in JobStatus.values:
            raise ValidationError(
                f"Unknown status {status!r}.",
                errors={"status": [f"One of: {', '.join(JobStatus.values)}."]},
            )
        jobs = jobs.filter(status=status)
    if model:
        jobs = jobs.filter(model__slug=model)
    return jobs.order_by("-created_at", "-id")


def job_get(*, organization: Organization, job_id) -> Job:
    """One job of the organization. A malformed id, a missing job and another tenant's job are
    all the same NotFound."""
    try:
        pk = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(str(job_id))
    except (TypeError, ValueError, AttributeError):
        raise NotFound("No such generation.") from None
    job = Job.objects.select_related("model__pool").filter(organization=organization, pk=pk).first()
    if job is None:
        raise NotFound("No such generation.")
    return job


def model_params_schema(model: AIModel) -> dict:
    """The JSON Schema `params` is validated against: the model's own, plus the `prompt` and
    `seed` every model accepts."""
    schema = dict(model.params_schema or {"type": "object"})
    properties = dict(schema.get("properties") or {})
    for name, spec in ALWAYS_ACCEPTED.items():
        properties.setdefault(name, spec)
    schema["properties"] = properties
    schema.setdefault("type", "object")
    return schema


def rate_current(*, model: AIModel, now: datetime | None = None) -> CreditRate | None:
    """The model's price version in force at `now` (what a submission pins), or None."""
    now = now or timezone.now()
    return model.rates.filter(effective_from__lte=now).order_by("-effective_from").first()


def rate_current_for_slug(*, model_slug: str, now: datetime) -> CreditRate | None:
    """The price in force at `now` of the active model `model_slug` (what `rate_current`
    gives), with its model and pool loaded: the submission's lookup, one query. None when
    there is no such model or it has no price yet."""
    return (
        CreditRate.objects.select_related("model__pool")
        .filter(model__slug=model_slug, model__is_active=True, effective_from__lte=now)
        .order_by("-effective_from")
        .first()
    )


@dataclass(frozen=True)
class CatalogEntry:
    """An active model as customers see it: its current price and effective params schema."""

    slug: str
    name: str
    description: str
    pool: str
    credits: Decimal
    params_schema: dict
    model: AIModel


def models_active(*, now: datetime | None = None) -> list[CatalogEntry]:
    """Models a customer can submit to now: active, on a node pool, with a price in force.
    Ordered by slug. The price is the one `rate_current` gives (what a submission would pin),
    read for every model in the same query (no query per model)."""
    now = now or timezone.now()
    in_force = CreditRate.objects.filter(model_id=OuterRef("pk"), effective_from__lte=now)
    models = (
        AIModel.objects.filter(is_active=True, pool__isnull=False)
        .select_related("pool")
        .annotate(
            current_credits=Subquery(in_force.order_by("-effective_from").values("credits")[:1])
        )
        .filter(current_credits__isnull=False)
        .order_by("slug")
    )
    return [
        CatalogEntry(
            slug=model.slug,
            name=model.name,
            description=model.description,
            pool=model.pool.slug,
            credits=model.current_credits,
            params_schema=model_params_schema(model),
            model=model,
        )
        for model in models
    ]


# Job.priority → the plan tier it was submitted under (submission.PRIORITY_BY_TIER reversed).
_TIER_BY_PRIORITY = {0: "dedicated", 1: "highest", 3: "high", 5: "normal", 8: "low"}


def queue_signals(
    *, pool_ids: list[int] | None = None, now: datetime | None = None
) -> dict[int, QueueSignals]:
    """Each pool's queue now — queued jobs and the oldest wait per tier — in one grouped
    query. Pools with nothing queued are absent (an empty QueueSignals is the same)."""
    from django.db.models import Count, Min
    from django.db.models.functions import Coalesce

    now = now or timezone.now()
    jobs = Job.objects.filter(status=JobStatus.QUEUED, model__pool__isnull=False)
    if pool_ids is not None:
        jobs = jobs.filter(model__pool_id__in=pool_ids)
    rows = (
        jobs.values("model__pool_id", "priority")
        .annotate(n=Count("id"), oldest=Min(Coalesce("enqueued_at", "created_at")))
        .order_by()
    )
    depth: dict[int, dict[str, int]] = {}
    wait: dict[int, dict[str, float]] = {}
    for row in rows:
        pool_id, tier = row["model__pool_id"], _TIER_BY_PRIORITY.get(row["priority"], "normal")
        d, w = depth.setdefault(pool_id, {}), wait.setdefault(pool_id, {})
        d[tier] = d.get(tier, 0) + row["n"]
        w[tier] = max(w.get(tier, 0.0), max(0.0, (now - row["oldest"]).total_seconds()))
    return {
        pool_id: QueueSignals(depth_by_tier=depth[pool_id], oldest_wait_s_by_tier=wait[pool_id])
        for pool_id in depth
    }


def units_by_model(
    *, slugs: set[str], start_at: datetime, end_at: datetime
) -> dict[str, tuple[str, Decimal]]:
    """For the unit-cost report (registered as infra_costs' units provider): each model priced
    by a price table → (its unit, the units its succeeded, uncached jobs finished in
    [start_at, end_at) produced), from each job's params with the actual units the backend
    reported, under the version pinned on the job. Models with flat prices are absent."""
    from generations.price_tables import rate_price

    rates = {
        r.pk: r
        for r in CreditRate.objects.filter(model__slug__in=slugs, price_table__isnull=False)
        .exclude(price_table={})
        .select_related("model")
    }
    if not rates:
        return {}
    jobs = Job.objects.filter(
        rate_id__in=list(rates),
        status=JobStatus.SUCCEEDED,
        cached=False,
        finished_at__gte=start_at,
        finished_at__lt=end_at,
    ).values_list("rate_id", "params", "actual_units")
    out: dict[str, tuple[str, Decimal]] = {}
    for rate_id, params, actual in jobs.iterator(chunk_size=2000):
        rate = rates[rate_id]
        try:
            price = rate_price(rate, {**(params or {}), **(actual or {})})
        except ValidationError:  # params a later schema change made unpriceable
            continue
        if price.unit is None or price.units is None:
            continue
        unit, total = out.get(rate.model.slug, (price.unit, Decimal(0)))
        out[rate.model.slug] = (unit, total + price.units)
    return out


def models_priced_by_params(*, model_ids: list[int], now: datetime | None = None) -> set[int]:
    """Of `model_ids`, the models whose price in force carries a price table (the price follows
    the params: the catalog shows its reference price as "from"). One query."""
    now = now or timezone.now()
    rates = (
        CreditRate.objects.filter(model_id__in=model_ids, effective_from__lte=now)
        .order_by("model_id", "-effective_from")
        .distinct("model_id")
        .values_list("model_id", "price_table")
    )
    return {model_id for model_id, table in rates if table}
