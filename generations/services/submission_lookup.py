"""The submission's lookups as fixed statements (issue 16, `config.rows`): they skip Django's
SQL compiler (about a third of a submission's Python time went to compiling the ORM's
SELECTs).

- `rate_and_override_for_slug`: the active model a request names with its pool, its price in
  force (what `selectors.rate_current_for_slug` gives) and the organization's contract price
  override in force (what `overrides.selectors.override_in_force` gives), in ONE statement:
  nothing is cached, every submission reads the versions in force at its `now`, so the price a
  job pins is the price in force at acceptance. tests/generations/test_submission_lookup.py
  checks it against those two selectors.
- `job_publish_record`: the `published_at` bookkeeping after a publish (one UPDATE).
- `job_by_idempotency_key`: the organization's job with an Idempotency-Key (the replay check
  before a keyed submission).

Both run through Django's cursor: its query log counts them.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from django.db import connection

from config.rows import columns, execute, instance, instances
from generations.models import AIModel, CreditRate, Job
from generations.overrides.models import PriceOverride
from infra_costs.models import NodePool

_MODELS = (CreditRate, AIModel, NodePool, PriceOverride, PriceOverride)


@cache
def _rate_sql() -> str:
    quote = connection.ops.quote_name
    rate, model, pool, override = (
        quote(m._meta.db_table) for m in (CreditRate, AIModel, NodePool, PriceOverride)
    )
    latest_override = (
        f"SELECT * FROM {override} o WHERE o.organization_id = %(org)s AND o.{{which}} "
        "AND o.effective_from <= %(now)s ORDER BY o.effective_from DESC, o.id DESC LIMIT 1"
    )
    return (
        f"SELECT {columns(CreditRate, 'r')}, {columns(AIModel, 'm')}, "
        f"{columns(NodePool, 'p')}, {columns(PriceOverride, 'om')}, "
        f"{columns(PriceOverride, 'oa')} "
        f"FROM (SELECT r.* FROM {rate} r JOIN {model} m ON m.id = r.model_id "
        "WHERE m.slug = %(slug)s AND m.is_active AND r.effective_from <= %(now)s "
        "ORDER BY r.effective_from DESC LIMIT 1) r "
        f"JOIN {model} m ON m.id = r.model_id "
        f"LEFT JOIN {pool} p ON p.id = m.pool_id "
        f"LEFT JOIN LATERAL ({latest_override.format(which='model_id = m.id')}) om ON TRUE "
        f"LEFT JOIN LATERAL ({latest_override.format(which='model_id IS NULL')}) oa ON TRUE"
    )


def rate_and_override_for_slug(
    *, model_slug: str, organization_id: int, now: datetime
) -> tuple[CreditRate | None, PriceOverride | None]:
    """The price in force at `now` of the active model `model_slug` (its model and pool
    loaded: `selectors.rate_current_for_slug`) and the organization's price override for it
    in force at `now` (`overrides.selectors.override_in_force`: the latest version of the
    model's own, else, when there is none or it ended, of the all-models one). One statement.
    (None, None) when there is no such model or it has no price yet."""
    rows = execute(_rate_sql(), {"slug": model_slug, "now": now, "org": organization_id})
    if not rows:
        return None, None
    rate, model, pool, own, all_models = instances(_MODELS, rows[0])
    AIModel._meta.get_field("pool").set_cached_value(model, pool)
    CreditRate._meta.get_field("model").set_cached_value(rate, model)
    override = next((o for o in (own, all_models) if o is not None and not o.ends), None)
    return rate, override


@cache
def _publish_sql() -> str:
    table = connection.ops.quote_name(Job._meta.db_table)
    return f"UPDATE {table} SET published_at = %s, publish_count = publish_count + 1 WHERE id = %s"


@cache
def _unpublish_sql() -> str:
    table = connection.ops.quote_name(Job._meta.db_table)
    return f"UPDATE {table} SET published_at = NULL WHERE id = %s"


def job_publish_record(*, job_id, published: bool, at: datetime) -> None:
    """The job's message reached the broker at `at` (`published_at`, `publish_count` + 1), or
    did not (`published_at` NULL). One statement."""
    if published:
        execute(_publish_sql(), [at, job_id], rows=False)
    else:
        execute(_unpublish_sql(), [job_id], rows=False)


@cache
def _idempotency_sql() -> str:
    return (
        f"SELECT {columns(Job, 'j')} FROM {connection.ops.quote_name(Job._meta.db_table)} j "
        "WHERE j.organization_id = %s AND j.idempotency_key = %s"
    )


def job_by_idempotency_key(*, organization_id: int, key: str) -> Job | None:
    """`Job.objects.filter(organization=…, idempotency_key=…).first()` (unique together: at
    most one row, so no ORDER BY) without the ORM's compiler."""
    rows = execute(_idempotency_sql(), [organization_id, key])
    return instance(Job, rows[0]) if rows else None
