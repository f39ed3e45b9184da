"""Capacity recommendation (predictive scaling), spec §3:

    rec = recommend_capacity("a100", weeks=4, buffer=Decimal("0.2"))
    as_json(rec)  # the JSON of `manage.py recommend_capacity --format json`

The method:

1. **Window**: the `weeks` weeks before `end` (a UTC date, exclusive; default: today, so the
   window ends at the start of the current UTC day).
2. **Busy node-hours per hour**: every run of the pool that overlaps the window (all statuses:
   a running GPU is busy whatever the outcome; a run still `running` is busy until the window
   ends) adds its seconds inside each local clock hour of the pool's time zone. An hour's
   *busy nodes* = busy seconds / the hour's length (3600 s). The repeated local hour of an
   autumn DST change is one observation of two hours; the skipped spring hour is none.
3. **Demand per hour-of-week** (168 slots, Monday 00:00 first, local time): a high percentile
   (p90 by default) of that slot's observations across the weeks — linear interpolation
   between the closest ranks (numpy's default, Excel's PERCENTILE.INC).
4. **Recommended nodes** per slot: `max(min_nodes, ceil(demand · (1 + buffer)))`, exactly
   (demand is a Fraction, never a float).
5. **Set-points**: the slots where the weekly sequence changes (cyclically: Sunday 23:00 →
   Monday 00:00 counts) become firings `0 H * * D` in the pool's time zone; firings of one
   hour and node count are merged over days (`0 8 * * 1-5`), then over hours. A constant
   recommendation is one set-point `0 0 * * *`. Expanding them with
   `infra_costs.schedule.pool_sizes` gives back the per-slot recommendation.
6. **Cost per week**: the node-hours of a capacity over the window ÷ weeks (an average week)
   × the hourly rate in force now. *Current*: the pool's active set-points expanded with
   `pool_sizes` over the window; a pool without set-points is measured by its recorded/
   imported uptime in the window instead (basis `uptime`). *Recommended*: the recommended
   set-points expanded the same way. `savings_fraction = 1 − recommended / current`
   (negative when the recommendation costs more; null when the current cost is 0).
7. **Replay** (FIFO per pool): every run that *started* in the window arrives at its
   `started_at` (imported history has no enqueue time) and needs its running time on one
   node. Runs are served in arrival order by the capacity in force at each instant (a heap
   of busy nodes' free times; capacity changes at set-point firings; when the capacity drops
   below the busy nodes, running jobs finish and new ones wait). Each run's queue wait →
   p50/p95 (linear interpolation) and the share of runs waiting longer than the pool's SLA.
   A run that could never start (capacity 0 for good) counts as over the SLA, and a
   percentile that falls on such runs is null.

Money is exact Decimal (6 dp when shown); waits are microsecond integers, shown in seconds.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone as dj_timezone

from config.errors import NotFound, ValidationError
from infra_costs.models import GpuRun, NodePool, PoolRate, ScheduleSetPoint, UptimeInterval
from infra_costs.periods import zone
from infra_costs.schedule import pool_sizes

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SLOTS = 7 * 24
US = timedelta(microseconds=1)
US_PER_S = 1_000_000
US_PER_H = 3600 * US_PER_S
MAX_WEEKS = 52
Q6 = Decimal("0.000001")
Q3 = Decimal("0.001")
DEFAULT_WEEKS = 4
DEFAULT_BUFFER = Decimal("0.2")
DEFAULT_PERCENTILE = Decimal(90)
# Replayed capacity is known up to one week past the window (queues drain into it); after
# that the last size holds.
REPLAY_TAIL = timedelta(days=7)


# --- Small exact helpers ------------------------------------------------------------------------


def percentile_of(values: list, p: Fraction | Decimal | int) -> Any:
    """The p-th percentile (0–100) of `values` by linear interpolation between closest ranks
    (numpy's default). Exact for ints/Fractions. None for no values or when it touches a None
    (an infinite value), which sorts last."""
    if not values:
        return None
    inf = [v for v in values if v is None]
    ordered = sorted(v for v in values if v is not None) + inf
    pos = Fraction(p) / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    frac = pos - lo
    a = ordered[lo]
    if frac == 0:
        return a
    b = ordered[lo + 1]
    if a is None or b is None:
        return None
    return a + (b - a) * frac


def recommended_nodes(demand: Fraction, buffer: Fraction, min_nodes: int) -> int:
    return max(min_nodes, math.ceil(Fraction(demand) * (1 + Fraction(buffer))))


def _q(value: Decimal | None, quantum: Decimal = Q6) -> str | None:
    if value is None:
        return None
    out = value.quantize(quantum, rounding=ROUND_HALF_UP)
    return f"{(out if out else abs(out)):f}"


# --- Hours of the window --------------------------------------------------------------------------


@dataclass(frozen=True)
class Hours:
    """The window cut at local clock hours: `bounds` (µs since the window start, first 0,
    last the window length) and, per hour, its observation index; `slot` per observation."""

    bounds: list[int]
    obs_of_hour: list[int]
    slot_of_obs: list[int]
    length_of_obs: list[int]


def window_hours(start_at: datetime, end_at: datetime, tz) -> Hours:
    step = timedelta(minutes=15)  # every UTC offset in use is a multiple of 15 minutes
    bounds_at = [start_at]
    t = start_at + step
    while t < end_at:
        local = t.astimezone(tz)
        if local.minute == 0:
            bounds_at.append(t)
        t += step
    bounds_at.append(end_at)
    keys: dict[tuple[date, int], int] = {}
    obs_of_hour: list[int] = []
    slot_of_obs: list[int] = []
    length_of_obs: list[int] = []
    for a, b in itertools.pairwise(bounds_at):
        local = a.astimezone(tz)
        key = (local.date(), local.hour)
        if key not in keys:
            keys[key] = len(slot_of_obs)
            slot_of_obs.append(local.weekday() * 24 + local.hour)
            length_of_obs.append(0)
        k = keys[key]
        obs_of_hour.append(k)
        length_of_obs[k] += (b - a) // US
    bounds = [(b - start_at) // US for b in bounds_at]
    return Hours(bounds, obs_of_hour, slot_of_obs, length_of_obs)


def busy_per_hour(intervals: list[tuple[int, int]], bounds: list[int]) -> list[int]:
    """Σ over intervals (µs, relative to the window start) of their µs inside each hour."""
    busy = [0] * (len(bounds) - 1)
    last = bounds[-1]
    for s, e in intervals:
        s, e = max(s, 0), min(e, last)
        if e <= s:
            continue
        i = bisect_right(bounds, s) - 1
        while s < e:
            edge = bounds[i + 1]
            if e <= edge:
                busy[i] += e - s
                break
            busy[i] += edge - s
            s = edge
            i += 1
    return busy


def slot_demand(hours: Hours, busy_us: list[int], p: Fraction | Decimal | int) -> list[Fraction]:
    """Per hour-of-week slot, the p-th percentile of its observations' busy nodes."""
    obs_busy = [0] * len(hours.slot_of_obs)
    for h, us in enumerate(busy_us):
        obs_busy[hours.obs_of_hour[h]] += us
    samples: list[list[Fraction]] = [[] for _ in range(SLOTS)]
    for k, slot in enumerate(hours.slot_of_obs):
        length = hours.length_of_obs[k]
        if length:
            samples[slot].append(Fraction(obs_busy[k], length))
    return [percentile_of(s, p) or Fraction(0) for s in samples]


# --- Set-points -----------------------------------------------------------------------------------


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


# --- Capacity over time, cost ---------------------------------------------------------------------


Steps = list[tuple[int, int]]  # (µs since the window start, size), first at 0


def schedule_steps(
    set_points: list[ScheduleSetPoint], start_at: datetime, end_at: datetime, tz_name: str
) -> Steps:
    return [((t - start_at) // US, n) for t, n in pool_sizes(set_points, start_at, end_at, tz_name)]


def uptime_steps(pool: NodePool, start_at: datetime, end_at: datetime) -> Steps | None:
    """Nodes up over time from the pool's recorded/imported uptime (overlaps of a node count
    once; the count at `end_at` holds after it); None when it has none in the period."""
    rows = (
        UptimeInterval.objects.filter(pool=pool, started_at__lt=end_at, ended_at__gt=start_at)
        .order_by("node_id", "started_at")
        .values_list("node_id", "started_at", "ended_at")
    )
    events: dict[int, int] = {}
    node, cur_s, cur_e = None, None, None

    def flush():
        if node is not None:
            a, b = (cur_s - start_at) // US, (cur_e - start_at) // US
            events[a] = events.get(a, 0) + 1
            if cur_e < end_at:  # nodes up at the end stay up: the replay's queue drains
                events[b] = events.get(b, 0) - 1

    for node_id, s, e in rows:
        s, e = max(s, start_at), min(e, end_at)
        if node_id == node and s <= cur_e:
            cur_e = max(cur_e, e)
            continue
        flush()
        node, cur_s, cur_e = node_id, s, e
    flush()
    if not events:
        return None
    steps: Steps = [(0, 0)]
    size = 0
    for t in sorted(events):
        size += events[t]
        if t == steps[-1][0]:
            steps[-1] = (t, size)
        elif size != steps[-1][1]:
            steps.append((t, size))
    return steps


def node_us(steps: Steps, end: int) -> int:
    """Node-µs of a capacity over [0, end)."""
    total = 0
    for (t, size), nxt in zip(steps, [*steps[1:], (None, 0)], strict=True):
        if t >= end:
            break
        t_next = end if nxt[0] is None else min(nxt[0], end)
        total += size * (t_next - t)
    return total


def rate_in_force(pool: NodePool, at: datetime) -> Decimal | None:
    """The pool's hourly rate in force at `at` (its first rate when all start later)."""
    rates = PoolRate.objects.filter(pool=pool)
    rate = rates.filter(effective_from__lte=at).order_by("-effective_from").first()
    rate = rate or rates.order_by("effective_from").first()
    return rate.hourly_rate_usd if rate else None


def weekly_cost(node_us_total: int, weeks: int, rate: Decimal | None) -> Decimal | None:
    if rate is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return Decimal(node_us_total) * rate / Decimal(US_PER_H) / Decimal(weeks)


# --- FIFO replay ----------------------------------------------------------------------------------


def replay(jobs: list[tuple[int, int]], steps: Steps) -> list[int | None]:
    """Queue waits (µs) of jobs `(arrival, duration)` — sorted by arrival — served FIFO, one
    node each, by a capacity that follows `steps` (the last size holds after the last step;
    0 before the first). None: the job never starts (no capacity ever again).

    O((jobs + steps) · log jobs): a heap of busy nodes' free times; a job starts at the first
    instant ≥ max(its arrival, the previous job's start) when fewer nodes are busy than the
    capacity; capacity cuts never stop running jobs."""
    times = [t for t, _ in steps]
    sizes = [n for _, n in steps]
    n_steps = len(steps)
    busy: list[int] = []
    waits: list[int | None] = []
    k = -1  # index of the step in force (−1: before the first, capacity 0)
    last_start = None
    for idx, (arrival, duration) in enumerate(jobs):
        t = arrival if last_start is None else max(arrival, last_start)
        while True:
            while k + 1 < n_steps and times[k + 1] <= t:
                k += 1
            while busy and busy[0] <= t:
                heapq.heappop(busy)
            if len(busy) < (sizes[k] if k >= 0 else 0):
                break
            candidates = []
            if busy:
                candidates.append(busy[0])
            if k + 1 < n_steps:
                candidates.append(times[k + 1])
            if not candidates:
                t = None
                break
            t = min(candidates)
        if t is None:  # FIFO: nothing after it starts either
            waits.extend([None] * (len(jobs) - idx))
            break
        heapq.heappush(busy, t + duration)
        last_start = t
        waits.append(t - arrival)
    return waits


@dataclass(frozen=True)
class ReplayStats:
    jobs: int
    p50_wait_s: Decimal | None
    p95_wait_s: Decimal | None
    share_over_sla: Decimal | None
    never_started: int = 0


def wait_stats(waits: list[int | None], sla_s: int) -> ReplayStats:
    if not waits:
        return ReplayStats(0, None, None, None)
    limit = sla_s * US_PER_S
    over = sum(1 for w in waits if w is None or w > limit)

    def secs(value) -> Decimal | None:
        if value is None:
            return None
        v = Fraction(value) / US_PER_S
        return Decimal(v.numerator) / Decimal(v.denominator)

    return ReplayStats(
        jobs=len(waits),
        p50_wait_s=secs(percentile_of(waits, 50)),
        p95_wait_s=secs(percentile_of(waits, 95)),
        share_over_sla=Decimal(over) / Decimal(len(waits)),
        never_started=sum(1 for w in waits if w is None),
    )


# --- The recommendation ---------------------------------------------------------------------------


@dataclass
class Recommendation:
    pool: NodePool
    start_at: datetime
    end_at: datetime
    weeks: int
    buffer: Decimal
    percentile: Decimal
    min_nodes: int
    timezone: str
    jobs: int  # runs overlapping the window
    replayed: int  # runs started in the window
    demand: list[Fraction]  # per slot, busy nodes
    nodes: list[int]  # per slot
    set_points: list[SetPoint]
    rate: Decimal | None
    current_basis: str  # "schedule" | "uptime" | "none"
    current_node_hours_per_week: Decimal
    recommended_node_hours_per_week: Decimal
    current_cost_usd: Decimal | None
    recommended_cost_usd: Decimal | None
    savings_fraction: Decimal | None
    replay: dict[str, ReplayStats] = field(default_factory=dict)


def run_intervals(pool: NodePool, start_at: datetime, end_at: datetime) -> list[tuple[int, int]]:
    """The pool's runs overlapping [start_at, end_at) as (start, end) µs since start_at, by
    start; a run still running ends at end_at. On PostgreSQL the offsets are computed by the
    database (exact numeric epoch), which spares parsing 2 timestamps per row in Python."""
    runs = (
        GpuRun.objects.filter(pool=pool, started_at__lt=end_at)
        .filter(Q(finished_at__gt=start_at) | Q(finished_at__isnull=True))
        .order_by("started_at", "id")
    )
    if connection.vendor == "postgresql":
        table = GpuRun._meta.db_table
        with connection.cursor() as cur:
            cur.execute(
                f"""
                SELECT (extract(epoch FROM r.started_at - %s) * 1000000)::bigint,
                       (extract(epoch FROM coalesce(r.finished_at, %s) - %s) * 1000000)::bigint
                FROM {table} r
                WHERE r.pool_id = %s AND r.started_at < %s
                  AND (r.finished_at > %s OR r.finished_at IS NULL)
                ORDER BY r.started_at, r.id
                """,
                [start_at, end_at, start_at, pool.pk, end_at, start_at],
            )
            return [(int(s), int(e)) for s, e in cur.fetchall()]
    return [
        ((s - start_at) // US, ((f or end_at) - start_at) // US)
        for s, f in runs.values_list("started_at", "finished_at")
    ]


def _decimal(value, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(
            f"{name} must be a number.", errors={name: ["Not a number."]}
        ) from None
    if not out.is_finite():
        raise ValidationError(f"{name} must be a number.", errors={name: ["Not a number."]})
    return out


def recommend_capacity(
    pool: str | NodePool,
    *,
    weeks: int = DEFAULT_WEEKS,
    buffer: Decimal | str | float = DEFAULT_BUFFER,
    percentile: Decimal | str | float = DEFAULT_PERCENTILE,
    end: date | None = None,
    now: datetime | None = None,
) -> Recommendation:
    if not isinstance(pool, NodePool):
        slug = pool
        pool = NodePool.objects.filter(slug=slug).first()
        if pool is None:
            known = ", ".join(NodePool.objects.values_list("slug", flat=True)) or "none"
            raise NotFound(f"Unknown pool {slug!r} (known pools: {known}).")
    if not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
        raise ValidationError(
            f"weeks must be an integer from 1 to {MAX_WEEKS}.",
            errors={"weeks": [f"From 1 to {MAX_WEEKS}."]},
        )
    buffer = _decimal(buffer, "buffer")
    if buffer < 0:
        raise ValidationError("buffer must be ≥ 0.", errors={"buffer": ["Must be ≥ 0."]})
    p = _decimal(percentile, "percentile")
    if not 0 <= p <= 100:
        raise ValidationError(
            "percentile must be from 0 to 100.", errors={"percentile": ["From 0 to 100."]}
        )
    tz = zone(pool.timezone or "UTC")
    now = now or dj_timezone.now()
    end_day = end or now.astimezone(UTC).date()
    end_at = datetime.combine(end_day, time.min, tzinfo=UTC)
    start_at = end_at - timedelta(weeks=weeks)
    horizon = end_at + REPLAY_TAIL
    window_us = (end_at - start_at) // US

    intervals = run_intervals(pool, start_at, end_at)
    replay_jobs = [(s, max(0, e - s)) for s, e in intervals if s >= 0]
    if not replay_jobs:
        raise ValidationError(
            f"No jobs of pool {pool.slug!r} started in the window "
            f"{start_at:%Y-%m-%d} → {end_at:%Y-%m-%d} ({weeks} weeks): nothing to recommend from.",
            errors={"pool": ["No jobs in the window."]},
        )

    # Demand → nodes per slot → set-points.
    hours = window_hours(start_at, end_at, tz)
    demand = slot_demand(hours, busy_per_hour(intervals, hours.bounds), p)
    min_nodes = pool.min_nodes if pool.min_nodes is not None else 1
    nodes = [recommended_nodes(d, Fraction(buffer), min_nodes) for d in demand]
    set_points = compress(nodes, pool.timezone or "UTC")

    # Capacities: current (schedule, or measured uptime without one) and recommended.
    current_sps = list(pool.set_points.filter(active=True).order_by("id"))
    if current_sps:
        basis = "schedule"
        current = schedule_steps(current_sps, start_at, horizon, pool.timezone)
    else:
        measured = uptime_steps(pool, start_at, end_at)
        basis = "uptime" if measured else "none"
        current = measured or [(0, 0)]
    recommended = schedule_steps(as_models(set_points, pool), start_at, horizon, pool.timezone)

    rate = rate_in_force(pool, now)
    cur_us, rec_us = node_us(current, window_us), node_us(recommended, window_us)
    current_cost = weekly_cost(cur_us, weeks, rate)
    recommended_cost = weekly_cost(rec_us, weeks, rate)
    savings = None
    if current_cost and recommended_cost is not None:
        with localcontext() as ctx:
            ctx.prec = 60
            savings = 1 - recommended_cost / current_cost

    sla = pool.sla_queue_wait_s
    per_week = Decimal(US_PER_H) * weeks
    return Recommendation(
        pool=pool,
        start_at=start_at,
        end_at=end_at,
        weeks=weeks,
        buffer=buffer,
        percentile=p,
        min_nodes=min_nodes,
        timezone=pool.timezone or "UTC",
        jobs=len(intervals),
        replayed=len(replay_jobs),
        demand=demand,
        nodes=nodes,
        set_points=set_points,
        rate=rate,
        current_basis=basis,
        current_node_hours_per_week=Decimal(cur_us) / per_week,
        recommended_node_hours_per_week=Decimal(rec_us) / per_week,
        current_cost_usd=current_cost,
        recommended_cost_usd=recommended_cost,
        savings_fraction=savings,
        replay={
            "current": wait_stats(replay(replay_jobs, current), sla),
            "recommended": wait_stats(replay(replay_jobs, recommended), sla),
        },
    )


# --- Renderings -----------------------------------------------------------------------------------


def _stats_json(s: ReplayStats) -> dict[str, str | None]:
    return {
        "p50_wait_s": _q(s.p50_wait_s, Q3),
        "p95_wait_s": _q(s.p95_wait_s, Q3),
        "share_over_sla": _q(s.share_over_sla),
    }


def as_dict(rec: Recommendation) -> dict[str, Any]:
    """The spec's JSON (§5), decimals as strings: costs are USD per week."""
    return {
        "pool": rec.pool.slug,
        "sla_s": rec.pool.sla_queue_wait_s,
        "set_points": [
            {"cron": sp.cron, "nodes": sp.nodes, "timezone": sp.timezone} for sp in rec.set_points
        ],
        "current_cost_usd": _q(rec.current_cost_usd),
        "recommended_cost_usd": _q(rec.recommended_cost_usd),
        "savings_fraction": _q(rec.savings_fraction),
        "replay": {
            "current": _stats_json(rec.replay["current"]),
            "recommended": _stats_json(rec.replay["recommended"]),
        },
    }


def as_json(rec: Recommendation) -> str:
    return json.dumps(as_dict(rec), indent=2)


SHADES = " ░▒▓█"


def _grid(values: list[str], shade: list[float], width: int = 3) -> list[str]:
    """A 7×24 grid of `values` (rows Monday…Sunday, columns local hours) and, beside each
    row, a heat strip of `shade` relative to its maximum."""
    top = max(shade) or 1
    lines = ["     " + "".join(f"{h:>{width}}" for h in range(24)) + "   heat 00→23"]
    for d in range(7):
        row = values[d * 24 : d * 24 + 24]
        heat = "".join(
            SHADES[math.ceil(shade[d * 24 + h] * (len(SHADES) - 1) / top)] for h in range(24)
        )
        lines.append(f"  {DAYS[d]}" + "".join(f"{v:>{width}}" for v in row) + f"   {heat}")
    return lines


def _money(value: Decimal | None) -> str:
    """$1,234.50 — cents at least, more digits only when the value has them."""
    if value is None:
        return "—"
    digits = max(2, -min(0, value.normalize().as_tuple().exponent))
    return f"${value.quantize(Decimal(1).scaleb(-min(digits, 6)), ROUND_HALF_UP):,}"


def _secs(value: Decimal | None) -> str:
    return "never" if value is None else f"{value.quantize(Decimal('0.1'), ROUND_HALF_UP)} s"


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{(value * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def as_table(rec: Recommendation) -> str:
    pool = rec.pool
    p = f"{rec.percentile.normalize():f}"
    basis = {
        "schedule": "its current schedule",
        "uptime": "its measured uptime (no schedule)",
        "none": "nothing (no schedule, no uptime)",
    }[rec.current_basis]
    lines = [
        f"Capacity recommendation — pool {pool.slug} ({pool.gpu_type}), time zone {rec.timezone}",
        f"Window {rec.start_at:%Y-%m-%d} → {rec.end_at:%Y-%m-%d} (UTC, {rec.weeks} weeks): "
        f"{rec.jobs} jobs, {rec.replayed} started in the window",
        f"Demand = p{p} of busy nodes per hour-of-week; nodes = max({rec.min_nodes}, "
        f"ceil(demand × {1 + rec.buffer:f}))",
        "",
        "Recommended nodes per local hour",
    ]
    lines += _grid([str(n) for n in rec.nodes], [float(n) for n in rec.nodes])
    lines += ["", f"Demand (p{p} busy nodes)"]
    lines += _grid(
        [f"{float(d):.1f}" if d < 10 else f"{float(d):.0f}" for d in rec.demand],
        [float(d) for d in rec.demand],
        width=4,
    )
    lines += ["", f"Set-points ({rec.timezone})"]
    width = max(len(sp.cron) for sp in rec.set_points)
    lines += [
        f"  {sp.cron.ljust(width)}  → {sp.nodes} node{'' if sp.nodes == 1 else 's'}"
        for sp in rec.set_points
    ]
    rate = "no rate" if rec.rate is None else f"{_money(rec.rate)}/node-hour in force now"
    lines += [
        "",
        f"Cost per week ({rate}; current = {basis})",
        f"  current      {_money(rec.current_cost_usd):>14}  "
        f"{rec.current_node_hours_per_week.quantize(Decimal('0.1'), ROUND_HALF_UP)} node-hours",
        f"  recommended  {_money(rec.recommended_cost_usd):>14}  "
        f"{rec.recommended_node_hours_per_week.quantize(Decimal('0.1'), ROUND_HALF_UP)} node-hours",
        f"  savings      {_pct(rec.savings_fraction):>14}",
        "",
        f"Replay of the window's jobs (FIFO, arrival = started_at, SLA {pool.sla_queue_wait_s} s)",
        f"  {'':<12} {'p50 wait':>10} {'p95 wait':>10} {'over SLA':>9}",
    ]
    for name in ("current", "recommended"):
        s = rec.replay[name]
        lines.append(
            f"  {name:<12} {_secs(s.p50_wait_s):>10} {_secs(s.p95_wait_s):>10} "
            f"{_pct(s.share_over_sla):>9}"
            + (f"  ({s.never_started} never start)" if s.never_started else "")
        )
    return "\n".join(lines)
