"""Pools and their rate versions (small files: the ORM), inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from infra_costs.imports.checks import check_pool, checked, finish
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows
from infra_costs.models import NodePool, PoolRate

POOL_COLUMNS = ("pool", "gpu_type", "hourly_rate_usd", "effective_from")


def write_pools(rows: NumberedRows, result: ImportResult, *, skip_invalid: bool) -> None:
    """Check the rows against each other and the database, then create the new pools and rate
    versions. Runs inside the caller's transaction."""
    good = list(checked(rows, check_pool, result))  # pool files are small
    pools = {p.slug: p for p in NodePool.objects.filter(slug__in={r[1] for r in good})}
    existing = {
        (r.pool.slug, r.effective_from): r.hourly_rate_usd
        for r in PoolRate.objects.filter(pool__slug__in={r[1] for r in good}).select_related("pool")
    }
    gpu_type_of: dict[str, tuple[str, int]] = {}
    seen: dict[tuple[str, datetime], int] = {}
    accepted = []
    for key, slug, gpu_type, rate, effective_from in good:
        reasons = []
        pool = pools.get(slug)
        if pool is not None and pool.gpu_type != gpu_type:
            reasons.append(f"pool {slug} exists with gpu_type {pool.gpu_type!r}, not {gpu_type!r}")
        first = gpu_type_of.setdefault(slug, (gpu_type, key))
        if pool is None and first[0] != gpu_type:
            reasons.append(
                f"gpu_type {gpu_type!r} differs from {first[0]!r} at {result.key_name} {first[1]}"
            )
        rate_key = (slug, effective_from)
        if rate_key in seen:
            reasons.append(
                f"duplicate rate version {slug} @ {effective_from.isoformat()} "
                f"(first at {result.key_name} {seen[rate_key]})"
            )
        else:
            seen[rate_key] = key
        old = existing.get(rate_key)
        if old is not None and old != rate:
            reasons.append(
                f"pool {slug} already has rate {old} from {effective_from.isoformat()}, not {rate}"
            )
        if reasons:
            result.errors[key] = reasons
        elif old is not None:
            result.already_present += 1
        else:
            accepted.append((slug, gpu_type, rate, effective_from))
    finish(result, skip_invalid)
    new_pools = 0
    for slug, gpu_type, _, _ in accepted:
        if slug not in pools:
            pools[slug], created = NodePool.objects.get_or_create(
                slug=slug, defaults={"gpu_type": gpu_type}
            )
            new_pools += created
    created_rates = PoolRate.objects.bulk_create(
        [
            PoolRate(
                pool=pools[slug],
                hourly_rate_usd=rate,
                effective_from=eff,
                reason="imported",
            )
            for slug, _g, rate, eff in accepted
        ],
        ignore_conflicts=True,
    )
    result.imported = len(created_rates)
    result.created = {"pools": new_pools}
