"""Capacity over time (steps of (µs since the window start, size)) and its cost (step 6):
node-hours over the window, cost per average week at a rate."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, localcontext

from infra_costs.capacity.units import US, US_PER_H
from infra_costs.models import ScheduleSetPoint
from infra_costs.schedule import pool_sizes

Steps = list[tuple[int, int]]  # (µs since the window start, size), first at 0


def schedule_steps(
    set_points: list[ScheduleSetPoint], start_at: datetime, end_at: datetime, tz_name: str
) -> Steps:
    return [((t - start_at) // US, n) for t, n in pool_sizes(set_points, start_at, end_at, tz_name)]


def node_us(steps: Steps, end: int) -> int:
    """Node-µs of a capacity over [0, end)."""
    total = 0
    for (t, size), nxt in zip(steps, [*steps[1:], (None, 0)], strict=True):
        if t >= end:
            break
        t_next = end if nxt[0] is None else min(nxt[0], end)
        total += size * (t_next - t)
    return total


def weekly_cost(node_us_total: int, weeks: int, rate: Decimal | None) -> Decimal | None:
    if rate is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(node_us_total) * rate / Decimal(US_PER_H) / Decimal(weeks)
