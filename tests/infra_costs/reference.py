"""A slow, literal reference implementation of spec §3, independent of `infra_costs`.

It works on plain data (no database) and exact fractions. Instead of islands, sweeps or
buckets it cuts the period at *every* instant where anything changes (window bounds, rate
changes, uptime and job starts and ends) and, for each elementary interval, asks the spec's
questions directly: which nodes are up, which are running a job, which succeeded jobs run,
what rate is in force. Quadratic and proud of it.

Rates by node state: an uptime interval has a `kind` — `on_demand` (billed at the hourly
rate), `spot` (the spot rate, else the hourly rate) or `warm` (the warm rate, else $0).
Intervals of one node and one kind count once where they overlap; a node up in two kinds at
once pays both (and its uptime counts both), but its busy time counts once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

KINDS = ("on_demand", "spot", "warm")


@dataclass(frozen=True)
class Rate:
    pool: str
    hourly: Fraction
    effective_from: datetime
    warm: Fraction | None = None
    spot: Fraction | None = None


@dataclass(frozen=True)
class Uptime:
    node: str
    pool: str
    start: datetime
    end: datetime
    kind: str = "on_demand"


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    node: str
    pool: str
    start: datetime
    end: datetime
    status: str


def windows(start: date, end: date, window: str, tz: str) -> list[tuple[datetime, datetime]]:
    """Local days (or hours) of [start, end) in tz, as UTC instants."""
    zone = ZoneInfo(tz)
    out = []
    day = start
    while day < end:
        lo = datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
        hi = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
        if window == "day":
            out.append((lo, hi))
        else:  # whole-hour offsets only (enough for the zones the tests use)
            t = lo
            while t < hi:
                out.append((t, t + timedelta(hours=1)))
                t += timedelta(hours=1)
        day += timedelta(days=1)
    return out


def _secs(a: datetime, b: datetime) -> Fraction:
    d = b - a
    return Fraction(d.days * 86400 + d.seconds) + Fraction(d.microseconds, 1_000_000)


def report(
    *,
    rates: list[Rate],
    uptime: list[Uptime],
    jobs: list[Job],
    start: date,
    end: date,
    window: str = "day",
    tz: str = "UTC",
    idle_policy: str = "weighted",
    external: dict[str, Fraction] | None = None,
) -> dict:
    wins = windows(start, end, window, tz)
    p0, p1 = wins[0][0], wins[-1][1]
    external = external or {}
    period_jobs = [j for j in jobs if p0 <= j.end < p1]
    node_pool = {u.node: u.pool for u in uptime} | {j.node: j.pool for j in jobs}

    points = {p0, p1}
    points |= {w[0] for w in wins}
    points |= {r.effective_from for r in rates if p0 < r.effective_from < p1}
    for u in uptime:
        points |= {t for t in (u.start, u.end) if p0 < t < p1}
    for j in period_jobs:
        points |= {t for t in (j.start, j.end) if p0 < t < p1}
    points = sorted(points)

    def version_at(pool: str, t: datetime) -> Rate | None:
        versions = [r for r in rates if r.pool == pool and r.effective_from <= t]
        return max(versions, key=lambda r: r.effective_from) if versions else None

    def price(version: Rate | None, kind: str) -> Fraction:
        if kind == "warm":
            return version.warm if version and version.warm is not None else Fraction(0)
        if version is None:
            return Fraction(0)  # before the pool's first rate: $0 (a warning)
        if kind == "spot" and version.spot is not None:
            return version.spot
        return version.hourly

    def window_of(t: datetime) -> int:
        return next(k for k, (lo, hi) in enumerate(wins) if lo <= t < hi)

    cost = defaultdict(Fraction)  # (pool, window)
    busy = defaultdict(Fraction)  # pool
    up_secs = defaultdict(Fraction)  # pool
    weight = defaultdict(Fraction)  # (job id, window)
    active = defaultdict(Fraction)  # job id
    outside = defaultdict(Fraction)  # node
    pools_seen = set()
    for a, b in pairwise(points):
        length = _secs(a, b)
        w = window_of(a)
        for node, pool in node_pool.items():
            kinds_up = {u.kind for u in uptime if u.node == node and u.start <= a < u.end}
            running = [j for j in period_jobs if j.node == node and max(j.start, p0) <= a < j.end]
            version = version_at(pool, a)
            r = price(version, "on_demand")
            if kinds_up:
                pools_seen.add(pool)
                for kind in kinds_up:
                    up_secs[pool] += length
                    cost[(pool, w)] += length * price(version, kind) / 3600
                if running:
                    busy[pool] += length
            elif running:
                outside[node] += length
            for j in running:
                if j.status == "succeeded":
                    weight[(j.id, w)] += length
                    active[j.id] += length * (r or 0) / 3600

    total_w = defaultdict(Fraction)  # (pool, window)
    by_id = {j.id: j for j in period_jobs}
    for (jid, w), secs in weight.items():
        total_w[(by_id[jid].pool, w)] += secs
    allocated = defaultdict(Fraction)  # job id
    for (jid, w), secs in weight.items():
        pool = by_id[jid].pool
        allocated[jid] += cost[(pool, w)] * secs / total_w[(pool, w)]
    pools = sorted(pools_seen | {j.pool for j in period_jobs})
    pool_rows = {}
    for pool in pools:
        c = sum((v for (p, _), v in cost.items() if p == pool), Fraction(0))
        unalloc = sum(
            (v for (p, w), v in cost.items() if p == pool and not total_w.get((pool, w))),
            Fraction(0),
        )
        pool_rows[pool] = {
            "uptime_hours": up_secs[pool] / 3600,
            "busy_hours": busy[pool] / 3600,
            "idle_hours": (up_secs[pool] - busy[pool]) / 3600,
            "idle_fraction": (up_secs[pool] - busy[pool]) / up_secs[pool]
            if up_secs[pool]
            else None,
            "cost_usd": c,
            "allocated_usd": c - unalloc,
            "unallocated_usd": unalloc,
        }

    models = sorted({j.model for j in period_jobs})
    alloc_mp = defaultdict(Fraction)  # (model, pool)
    weight_mp = defaultdict(Fraction)
    for j in period_jobs:
        if j.status == "succeeded":
            alloc_mp[(j.model, j.pool)] += allocated[j.id]
            weight_mp[(j.model, j.pool)] += sum(
                (s for (jid, _), s in weight.items() if jid == j.id), Fraction(0)
            )
    fully = defaultdict(Fraction)
    unattributed = Fraction(0)
    infra = sum((r["cost_usd"] for r in pool_rows.values()), Fraction(0))
    for pool in pools:
        unalloc = pool_rows[pool]["unallocated_usd"]
        on_pool = [m for m in models if (m, pool) in alloc_mp or (m, pool) in weight_mp]
        ta = sum((alloc_mp[(m, pool)] for m in on_pool), Fraction(0))
        tw = sum((weight_mp[(m, pool)] for m in on_pool), Fraction(0))
        for m in on_pool:
            fully[m] += alloc_mp[(m, pool)]
            if ta > 0:
                fully[m] += unalloc * alloc_mp[(m, pool)] / ta
            elif tw > 0:
                fully[m] += unalloc * weight_mp[(m, pool)] / tw
        if ta <= 0 and tw <= 0:
            unattributed += unalloc

    model_rows = {}
    for m in models:
        mine = [j for j in period_jobs if j.model == m]
        ok = [j for j in mine if j.status == "succeeded"]
        gens = len(ok)
        act = sum((active[j.id] for j in ok), Fraction(0))
        alloc = sum((allocated[j.id] for j in ok), Fraction(0))
        full = fully[m]
        if idle_policy == "separate":
            alloc = full = act
        ext = external.get(m, Fraction(0)) * gens
        model_rows[m] = {
            "generations": gens,
            "failed": sum(1 for j in mine if j.status == "failed"),
            "gpu_hours": sum((weight_mp[(m, p)] for p in pools), Fraction(0)) / 3600,
            "active_cost_usd": act,
            "allocated_cost_usd": alloc,
            "fully_loaded_cost_usd": full,
            "external_cost_usd": ext,
            "cost_per_generation_usd": (full + ext) / gens if gens else None,
            "active_cost_per_generation_usd": (act + ext) / gens if gens else None,
        }
    if idle_policy == "separate":
        unattributed = infra - sum(
            (r["fully_loaded_cost_usd"] for r in model_rows.values()), Fraction(0)
        )
        for pool in pools:
            act_pool = sum(
                (active[j.id] for j in period_jobs if j.pool == pool and j.status == "succeeded"),
                Fraction(0),
            )
            pool_rows[pool]["allocated_usd"] = act_pool
            pool_rows[pool]["unallocated_usd"] = pool_rows[pool]["cost_usd"] - act_pool
    gens = sum(r["generations"] for r in model_rows.values())
    total_up = sum((r["uptime_hours"] for r in pool_rows.values()), Fraction(0))
    total_busy = sum((r["busy_hours"] for r in pool_rows.values()), Fraction(0))
    return {
        "pools": pool_rows,
        "models": model_rows,
        "totals": {
            "infra_cost_usd": infra,
            "generations": gens,
            "unattributed_usd": unattributed,
            "weighted_avg_cost_per_generation_usd": (
                sum(
                    (
                        r["fully_loaded_cost_usd"] + r["external_cost_usd"]
                        for r in model_rows.values()
                    ),
                    Fraction(0),
                )
                / gens
                if gens
                else None
            ),
            "idle_fraction": (total_up - total_busy) / total_up if total_up else None,
        },
        "outside": {n: s for n, s in outside.items() if s},
    }
