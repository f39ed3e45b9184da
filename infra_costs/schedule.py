"""Planned uptime from a pool's schedule set-points, for periods in which it has no uptime.

At each firing of a set-point's cron expression (in its time zone) the pool's size becomes its
`node_count`; the size when the period starts is that of the last firing before it (0 when
nothing ever fired). Set-points firing at the same instant apply in id order (the last wins).

The size over time becomes planned uptime per *rank*: rank r is up while the size is ≥ r. Rank
r is played by the pool's r-th node by name (so jobs on it are inside planned uptime); ranks
beyond the pool's known nodes get synthetic negative node ids.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.db.models import QuerySet

from config.errors import ValidationError
from infra_costs.models import Node, NodePool, ScheduleSetPoint, ScheduleVersion, UptimeInterval

MAX_FIRINGS = 500_000
SYNTHETIC_BASE = 1_000_000


@dataclass(frozen=True)
class PlannedInterval:
    node_id: int
    pool_id: int
    started_at: datetime
    ended_at: datetime


def cron_error(cron: str) -> str | None:
    """Why `cron` is not a usable set-point expression (None when it is)."""
    if len(cron.split()) != 5:
        return "Use a 5-field cron expression: minute hour day-of-month month day-of-week."
    if not croniter.is_valid(cron):
        return "This is not a valid cron expression (e.g. 0 8 * * 1-5 is 08:00 on weekdays)."
    return None


def timezone_error(name: str) -> str | None:
    """Why `name` is not an IANA time zone (None when it is)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "Unknown time zone: use an IANA name such as UTC or Europe/Paris."
    return None


def _tz(name: str, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        try:
            return ZoneInfo(candidate or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def pool_sizes(
    set_points: list[ScheduleSetPoint], start_at: datetime, end_at: datetime, pool_tz: str = "UTC"
) -> list[tuple[datetime, int]]:
    """The pool's size as a step function over [start_at, end_at): [(t, size), …], the first
    at start_at, each following one where the size changes."""
    initial: tuple[datetime, int, int] | None = None  # (time, set-point id, count)
    events: list[tuple[datetime, int, int]] = []
    for sp in set_points:
        if not croniter.is_valid(sp.cron):
            raise ValidationError(f"Set-point {sp.pk} of pool {sp.pool_id}: bad cron {sp.cron!r}.")
        tz = _tz(sp.timezone, pool_tz)
        local_start = start_at.astimezone(tz)
        try:
            prev = croniter(sp.cron, local_start).get_prev(datetime)
        except (StopIteration, ValueError, KeyError):  # never fires before the period
            prev = None
        if prev is not None:
            candidate = (prev, sp.pk, sp.node_count)
            if initial is None or candidate[:2] > initial[:2]:
                initial = candidate
        it = croniter(sp.cron, local_start - timedelta(seconds=1))
        while True:
            try:
                t = it.get_next(datetime)
            except (StopIteration, ValueError, KeyError):
                break
            if t >= end_at:
                break
            events.append((t, sp.pk, sp.node_count))
            if len(events) > MAX_FIRINGS:
                raise ValidationError("The schedule fires too often over this period.")
    events.sort(key=lambda e: (e[0], e[1]))
    size = initial[2] if initial else 0
    steps = [(start_at, size)]
    for t, _pk, count in events:
        if t == steps[-1][0]:
            steps[-1] = (t, count)
        elif count != steps[-1][1]:
            steps.append((t, count))
    # Merge equal neighbours left by same-instant replacements.
    merged: list[tuple[datetime, int]] = []
    for t, count in steps:
        if merged and merged[-1][1] == count:
            continue
        merged.append((t, count))
    return merged


def _version_in_force(pool: NodePool, at: datetime | None) -> ScheduleVersion | None:
    versions = ScheduleVersion.objects.filter(pool_id=pool.pk)
    if at is not None:
        versions = versions.filter(effective_from__lte=at)
    return versions.order_by("-effective_from", "-number").first()


def active_set_points(pool: NodePool, at: datetime | None = None) -> QuerySet[ScheduleSetPoint]:
    """The set-points in force at `at` (default: the latest schedule): those of the pool's
    latest version in force then, or — before its first version — its unversioned ones;
    inactive ones never. In id order (the order `pool_sizes` applies same-instant firings in).
    Every reader of a schedule goes through this."""
    version = _version_in_force(pool, at)
    qs = ScheduleSetPoint.objects.filter(pool_id=pool.pk, active=True)
    qs = qs.filter(version=version) if version else qs.filter(version__isnull=True)
    return qs.order_by("id")


def schedule_segments(
    pool: NodePool, start_at: datetime, end_at: datetime
) -> list[tuple[datetime, datetime, list[ScheduleSetPoint]]]:
    """[start_at, end_at) cut at the versions' `effective_from`: (from, to, set-points)."""
    cuts = sorted(
        set(
            ScheduleVersion.objects.filter(
                pool_id=pool.pk, effective_from__gt=start_at, effective_from__lt=end_at
            ).values_list("effective_from", flat=True)
        )
    )
    bounds = [start_at, *cuts, end_at]
    return [(a, b, list(active_set_points(pool, a))) for a, b in itertools.pairwise(bounds)]


def schedule_sizes(
    pool: NodePool, start_at: datetime, end_at: datetime
) -> list[tuple[datetime, int]]:
    """`pool_sizes` of the schedule in force over [start_at, end_at), version by version (a
    new version's size when it takes effect is that of its last firing before then)."""
    steps: list[tuple[datetime, int]] = []
    for a, b, set_points in schedule_segments(pool, start_at, end_at):
        part = pool_sizes(set_points, a, b, pool.timezone) if set_points else [(a, 0)]
        for t, size in part:
            if not steps or steps[-1][1] != size:
                steps.append((t, size))
    return steps


def pools_with_schedule(start_at: datetime, end_at: datetime) -> list[NodePool]:
    """Pools with a set-point in force at some time of [start_at, end_at)."""
    return [
        pool
        for pool in NodePool.objects.all()
        if any(sps for _a, _b, sps in schedule_segments(pool, start_at, end_at))
    ]


def planned_uptime(pool: NodePool, start_at: datetime, end_at: datetime) -> list[PlannedInterval]:
    segments = schedule_segments(pool, start_at, end_at)
    if not any(sps for _a, _b, sps in segments):
        return []
    steps = schedule_sizes(pool, start_at, end_at)
    nodes = list(Node.objects.filter(pool=pool).order_by("name").values_list("id", flat=True))
    open_since: dict[int, datetime] = {}
    out: list[PlannedInterval] = []

    def node_id(rank: int) -> int:
        if rank <= len(nodes):
            return nodes[rank - 1]
        return -(pool.pk * SYNTHETIC_BASE + rank)

    for t, size in steps:
        for rank in [r for r in open_since if r > size]:
            out.append(PlannedInterval(node_id(rank), pool.pk, open_since.pop(rank), t))
        for rank in range(1, size + 1):
            open_since.setdefault(rank, t)
    for rank, since in open_since.items():
        out.append(PlannedInterval(node_id(rank), pool.pk, since, end_at))
    return [iv for iv in out if iv.ended_at > iv.started_at]


def unmeasured_pools_planned_uptime(
    start_at: datetime, end_at: datetime
) -> dict[int, list[PlannedInterval]]:
    """Per pool id, the planned uptime of the pools that have active set-points and no
    measured uptime in [start_at, end_at) — the pools the reports cost from their schedule (a
    pool's list is empty when its schedule plans nothing then)."""
    measured = set(
        UptimeInterval.objects.filter(started_at__lt=end_at, ended_at__gt=start_at)
        .order_by()
        .values_list("pool_id", flat=True)
        .distinct()
    )
    return {
        pool.pk: planned_uptime(pool, start_at, end_at)
        for pool in pools_with_schedule(start_at, end_at)
        if pool.pk not in measured
    }
