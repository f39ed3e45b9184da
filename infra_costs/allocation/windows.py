"""The inputs of a unit-cost report: the period's slices (its windows cut again at rate
changes, so a rate is constant within a slice), the pools, and the planned uptime of the pools
that have no measured uptime in the period (their schedule)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime

from infra_costs.models import NodePool, PoolRate
from infra_costs.periods import Period
from infra_costs.schedule import PlannedInterval, unmeasured_pools_planned_uptime


@dataclass
class Inputs:
    period: Period
    bounds: list[datetime]  # slice boundaries (UTC): window bounds ∪ rate changes in the period
    slice_window: list[int]  # 0-based window index of each slice
    pools: dict[int, str]  # id → slug
    schedule_pools: set[int]
    planned: list[PlannedInterval]


def gather_inputs(period: Period) -> Inputs:
    start_at, end_at = period.start_at, period.end_at
    changes = set(
        PoolRate.objects.filter(effective_from__gt=start_at, effective_from__lt=end_at)
        .order_by()
        .values_list("effective_from", flat=True)
        .distinct()
    )
    bounds = sorted(set(period.bounds) | {c.astimezone(UTC) for c in changes})
    windows = list(period.bounds)
    slice_window = [bisect.bisect_right(windows, b) - 1 for b in bounds[:-1]]
    pools = dict(NodePool.objects.values_list("id", "slug"))
    by_pool = unmeasured_pools_planned_uptime(start_at, end_at)
    schedule_pools = set(by_pool)
    planned = [iv for intervals in by_pool.values() for iv in intervals]
    return Inputs(period, bounds, slice_window, pools, schedule_pools, planned)
