"""The allocation math of spec §3 over exact per-slice aggregates: cost, allocated cost and
active cost per pool and per (model, pool). A loop over (pool | model, pool) × slice, never
over jobs; the aggregates come from `infra_costs.allocation.sql`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from infra_costs.allocation.windows import Inputs
from infra_costs.models import RateKind

ZERO = Decimal(0)
HOUR = Decimal(3600)


@dataclass
class RawPool:
    uptime_s: Decimal = ZERO
    busy_s: Decimal = ZERO
    cost: Decimal = ZERO
    allocated: Decimal = ZERO  # cost of windows with weight
    unallocated: Decimal = ZERO  # cost of windows without
    unpriced_s: Decimal = ZERO  # uptime or job seconds with no rate in force
    jobs: int = 0  # runs of the period (any final status)


@dataclass
class RawModelPool:
    allocated: Decimal = ZERO
    weight_s: Decimal = ZERO  # succeeded seconds in the period = gpu seconds
    active: Decimal = ZERO


@dataclass
class Raw:
    pools: dict[int, RawPool] = field(default_factory=dict)
    model_pool: dict[tuple[str, int], RawModelPool] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # model → status → n
    outside: list[tuple[int, int, Decimal]] = field(default_factory=list)  # pool, node, seconds


def exact_seconds(value) -> Decimal:
    """An interval (timedelta) or numeric seconds → exact Decimal seconds."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return Decimal(micro) / Decimal(1_000_000)


def kind_rate(
    kind: str, hourly: Decimal | None, spot: Decimal | None, warm: Decimal | None
) -> Decimal | None:
    """The hourly price of uptime of `kind` under one rate version (None: no version in force).

    `on_demand`: the hourly rate; `spot`: the spot rate, or the hourly rate when the pool has
    none; `warm`: the warm rate, or $0 when the pool has none (a stopped node costs nothing
    unless the provider charges for it) — so warm time is never unpriced.
    """
    if kind == RateKind.WARM:
        return warm if warm is not None else ZERO
    if kind == RateKind.SPOT and spot is not None and hourly is not None:
        return spot
    return hourly


def allocate(
    raw: Raw,
    inp: Inputs,
    up_pw: dict,
    weight: dict,
    rate: Callable[[int, int, str], Decimal | None],
) -> None:
    """Cost, allocation and active cost from exact per-slice aggregates. A loop over
    (pool | model, pool) × slice × rate kind, never over jobs.

    `up_pw`: (pool, slice, rate kind) → uptime seconds; `weight`: (model, pool, slice) →
    seconds of succeeded runs; `rate(pool, slice, kind)` → hourly rate of that kind
    (`kind_rate`), or None when no rate is in force. A pool's cost per window is Σ over kinds
    of seconds × that kind's rate; its `uptime_s` counts every kind (warm time is paid and
    unused: idle); `unpriced_s` only on-demand and spot seconds with no rate in force. A job's
    active cost is at the on-demand hourly rate, whatever the node was billed at. Products
    seconds × rate are exact; each division is done once, late, at 50 significant digits.
    """
    win_of = inp.slice_window
    cost_x: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # (pool, window) → Σ s × $/h
    for (pool_id, i, kind), secs in up_pw.items():
        pool = raw.pools.setdefault(pool_id, RawPool())
        r = rate(pool_id, i, kind)
        pool.uptime_s += secs
        if r is None:
            pool.unpriced_s += secs
        else:
            cost_x[(pool_id, win_of[i])] += secs * r
    w_mpw: dict[tuple[str, int, int], Decimal] = defaultdict(Decimal)
    w_pw: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    active_x: dict[tuple[str, int], Decimal] = defaultdict(Decimal)
    for (model, pool_id, i), secs in weight.items():
        w_mpw[(model, pool_id, win_of[i])] += secs
        w_pw[(pool_id, win_of[i])] += secs
        raw.model_pool.setdefault((model, pool_id), RawModelPool()).weight_s += secs
        r = rate(pool_id, i, RateKind.ON_DEMAND)
        if r is None:
            raw.pools.setdefault(pool_id, RawPool()).unpriced_s += secs
        else:
            active_x[(model, pool_id)] += secs * r
    for key, x in active_x.items():
        raw.model_pool[key].active = x / HOUR
    for pool_id in {p for p, _ in cost_x}:
        pool = raw.pools[pool_id]
        x_all = sum((x for (p, _), x in cost_x.items() if p == pool_id), ZERO)
        x_alloc = sum(
            (x for (p, w), x in cost_x.items() if p == pool_id and w_pw.get((p, w), ZERO) > 0),
            ZERO,
        )
        pool.cost = x_all / HOUR
        pool.allocated = x_alloc / HOUR
        pool.unallocated = (x_all - x_alloc) / HOUR
    for (model, pool_id, win), secs in w_mpw.items():
        total = w_pw[(pool_id, win)]
        x = cost_x.get((pool_id, win), ZERO)
        if total > 0 and x:
            raw.model_pool[(model, pool_id)].allocated += x * secs / (total * HOUR)
