"""Set-points (step 5): the weekly per-slot node counts as cron set-points in the pool's time
zone, merged over days and hours; and back as unsaved `ScheduleSetPoint` rows, which
`infra_costs.schedule.pool_sizes` expands into the per-slot counts again."""

from __future__ import annotations

from dataclasses import dataclass

from infra_costs.capacity.units import SLOTS
from infra_costs.models import NodePool, ScheduleSetPoint


@dataclass(frozen=True)
class SetPoint:
    cron: str
    nodes: int
    timezone: str
    first_slot: int  # for ordering: its earliest firing in the week (Monday 00:00 = 0)


def _cron_dow(weekday: int) -> int:
    """Python weekday (Mon=0) → cron day of week (Sun=0)."""
    return (weekday + 1) % 7


def _runs(values: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return runs


def _list_expr(values: list[int]) -> str:
    parts = []
    for run in _runs(values):
        if len(run) >= 3:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            parts.extend(str(v) for v in run)
    return ",".join(parts)


def days_expr(weekdays: set[int]) -> str:
    """Python weekdays → the cron day-of-week field, Monday first: {0..4} → `1-5`,
    {5, 6} → `6,0`, all → `*`."""
    if len(weekdays) == 7:
        return "*"
    ordered = sorted(weekdays)
    mon_sat = [_cron_dow(d) for d in ordered if d != 6]
    expr = _list_expr(mon_sat)
    if 6 in weekdays:
        expr = f"{expr},0" if expr else "0"
    return expr


def hours_expr(hours: set[int]) -> str:
    return "*" if len(hours) == 24 else _list_expr(sorted(hours))


def compress(nodes: list[int], tz_name: str) -> list[SetPoint]:
    """The weekly per-slot node counts (168, Monday 00:00 first) as cron set-points.

    A firing is needed at each slot whose count differs from the slot before (cyclically).
    Firings of one (hour, count) are merged over days — also over days where that slot
    already has that count (a redundant firing is harmless) when that gives a day field of
    fewer parts (`1-3,5` → `1-5`) — and then set-points with the same days and count over
    hours."""
    if len(nodes) != SLOTS:
        raise ValueError("168 slots expected")
    changes = [s for s in range(SLOTS) if nodes[s] != nodes[s - 1]]
    if not changes:
        return [SetPoint("0 0 * * *", nodes[0], tz_name, 0)]
    needed: dict[tuple[int, int], set[int]] = {}
    for s in changes:
        needed.setdefault((s % 24, nodes[s]), set()).add(s // 24)
    by_days: dict[tuple[str, int], set[int]] = {}
    first: dict[tuple[str, int], int] = {}
    for (hour, count), days in needed.items():
        allowed = {d for d in range(7) if nodes[d * 24 + hour] == count}
        expr = min((days_expr(days), days_expr(allowed)), key=lambda e: e.count(","))
        key = (expr, count)
        by_days.setdefault(key, set()).add(hour)
        slot = min(days) * 24 + hour
        first[key] = min(first.get(key, slot), slot)
    out = [
        SetPoint(f"0 {hours_expr(hours)} * * {expr}", count, tz_name, first[(expr, count)])
        for (expr, count), hours in by_days.items()
    ]
    return sorted(out, key=lambda sp: (sp.first_slot, sp.cron))


def as_models(set_points: list[SetPoint], pool: NodePool | None = None) -> list[ScheduleSetPoint]:
    """Unsaved ScheduleSetPoint rows (with stand-in ids, for pool_sizes' ordering)."""
    return [
        ScheduleSetPoint(
            pk=i + 1,
            pool_id=pool.pk if pool else None,
            cron=sp.cron,
            node_count=sp.nodes,
            timezone=sp.timezone,
        )
        for i, sp in enumerate(set_points)
    ]
