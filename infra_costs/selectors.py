"""Reads for the staff cost report's charts: per pool and local hour of a period, uptime, busy
time and cost — from which the daily cost vs busy hours series and the idle heatmap
(hour of day × day) are drawn.

Same inputs and rules as the unit-cost report (`infra_costs.allocation`): per node, uptime
intervals merged (overlaps count once) and clipped to the period; pools without measured uptime
in the period use their schedule; busy = the union of the node's runs that finished in the
period (starts clipped to the period), intersected with its uptime; cost = uptime × the rate in
force for the interval's kind (on-demand, spot or warm). So per pool, the hours add up to the
report's `uptime_hours`, `busy_hours` and `cost_usd`.

One set-based statement on PostgreSQL: one sweep per node over the start/end events of its
uptime intervals and runs (running counts tell where the node is up, and where it is also
busy; overlaps count once), and the resulting segments cut at the hours (and rate changes) by
`width_bucket`. Rates are applied to the per-slice sums (a few hundred rows), never to runs:
no loop over runs in Python.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection, transaction

from infra_costs.models import TERMINAL_RUN_STATUSES, GpuRun, NodePool, PoolRate, UptimeInterval
from infra_costs.periods import make_period
from infra_costs.schedule import unmeasured_pools_planned_uptime

ZERO = Decimal(0)
HOUR = Decimal(3600)


@dataclass(frozen=True)
class PoolHour:
    """One pool's figures in one local hour of the period (seconds and USD, exact)."""

    pool: str
    start: datetime  # UTC
    day: date  # local
    hour: int  # local hour of day, 0–23
    uptime_s: Decimal
    busy_s: Decimal
    cost_usd: Decimal

    @property
    def idle_s(self) -> Decimal:
        return self.uptime_s - self.busy_s


_SQL = """
WITH bnd AS MATERIALIZED (
    SELECT %(b)s::timestamptz[] AS b
), raw_up AS (
    SELECT node_id, pool_id, greatest(started_at, %(p0)s) AS s, least(ended_at, %(p1)s) AS e,
           rate_kind AS k
    FROM {up_t} WHERE started_at < %(p1)s AND ended_at > %(p0)s
    UNION ALL
    SELECT node_id, pool_id, s, e, 'on_demand'
    FROM unnest(%(pn)s::bigint[], %(pp)s::bigint[], %(ps)s::timestamptz[], %(pe)s::timestamptz[])
         AS t(node_id, pool_id, s, e)
), node_pool AS MATERIALIZED (
    SELECT node_id, min(pool_id) AS pool_id FROM raw_up GROUP BY node_id
), ev AS (
    -- du counts uptime of any kind; dw / ds count the warm and spot intervals among them.
    SELECT node_id, s AS t, 1 AS du, (k = 'warm')::int AS dw, (k = 'spot')::int AS ds, 0 AS dr
    FROM raw_up
    UNION ALL SELECT node_id, e, -1, -(k = 'warm')::int, -(k = 'spot')::int, 0 FROM raw_up
    UNION ALL
    SELECT node_id, greatest(started_at, %(p0)s), 0, 0, 0, 1 FROM {run_t}
    WHERE finished_at >= %(p0)s AND finished_at < %(p1)s AND status = ANY(%(terminal)s)
      AND finished_at > greatest(started_at, %(p0)s)
    UNION ALL
    SELECT node_id, finished_at, 0, 0, 0, -1 FROM {run_t}
    WHERE finished_at >= %(p0)s AND finished_at < %(p1)s AND status = ANY(%(terminal)s)
      AND finished_at > greatest(started_at, %(p0)s)
), seg AS MATERIALIZED (
    -- Between two consecutive event times of a node: how many of its uptime intervals and of
    -- its runs cover it (overlaps count once: only "> 0" matters).
    SELECT node_id, t AS s, lead(t) OVER w AS e, sum(du) OVER w AS u, sum(dr) OVER w AS r,
           sum(dw) OVER w AS uw, sum(ds) OVER w AS us
    FROM ev
    WINDOW w AS (PARTITION BY node_id ORDER BY t)
), piece AS MATERIALIZED (
    -- A segment is billed at the hourly (on-demand) rate when a non-warm, non-spot interval
    -- covers it, else at the spot rate when a spot one does, else at the warm rate.
    SELECT np.pool_id, gs.i, seg.r > 0 AS busy,
           CASE WHEN seg.u > seg.uw + seg.us THEN 'o' WHEN seg.us > 0 THEN 's' ELSE 'w' END AS k,
           extract(epoch FROM least(seg.e, bnd.b[gs.i + 1]) - greatest(seg.s, bnd.b[gs.i])) AS d
    FROM seg
    JOIN node_pool np USING (node_id)
    CROSS JOIN bnd
    CROSS JOIN LATERAL generate_series(width_bucket(seg.s, bnd.b),
                                       width_bucket(seg.e, bnd.b)) AS gs(i)
    WHERE seg.u > 0 AND seg.e > seg.s AND gs.i BETWEEN 1 AND %(n)s
)
SELECT pool_id, i, sum(d) AS up_s, coalesce(sum(d) FILTER (WHERE busy), 0) AS busy_s,
       coalesce(sum(d) FILTER (WHERE k = 's'), 0) AS spot_s,
       coalesce(sum(d) FILTER (WHERE k = 'w'), 0) AS warm_s
FROM piece
WHERE d > 0
GROUP BY pool_id, i
"""


def _rates(bounds: list[datetime]) -> dict[int, list[tuple | None]]:
    """Per pool, the rates in force in each slice [bounds[i], bounds[i+1]) as (hourly, warm,
    spot) — None before its first rate: that time costs nothing, as in the report."""
    versions: dict[int, list[tuple[datetime, tuple]]] = defaultdict(list)
    for pool_id, f, *rates in PoolRate.objects.order_by("pool_id", "effective_from").values_list(
        "pool_id",
        "effective_from",
        "hourly_rate_usd",
        "warm_hourly_rate_usd",
        "spot_hourly_rate_usd",
    ):
        versions[pool_id].append((f, tuple(rates)))
    out = {}
    for pool_id, vs in versions.items():
        starts = [f for f, _ in vs]
        out[pool_id] = [
            vs[k][1] if (k := bisect.bisect_right(starts, b) - 1) >= 0 else None
            for b in bounds[:-1]
        ]
    return out


def _cost(rates: tuple | None, up_s: Decimal, spot_s: Decimal, warm_s: Decimal) -> Decimal:
    """Seconds at each rate kind × that rate (docs/unit-costs.md "Rates by node state"):
    on-demand at the hourly rate, spot at the spot rate (or hourly), warm at the warm rate
    (or nothing)."""
    if rates is None:
        return ZERO
    hourly, warm, spot = rates
    x = (up_s - spot_s - warm_s) * hourly + spot_s * (hourly if spot is None else spot)
    if warm is not None:
        x += warm_s * warm
    return x / HOUR


def pool_hours(
    start: date, end: date, *, timezone: str = "UTC", pools: list[str] | None = None
) -> list[PoolHour]:
    """Per pool and local hour of [start, end) in `timezone`: uptime, busy and cost. Hours
    without uptime are left out. A repeated local hour (autumn DST change) is two rows."""
    period = make_period(start, end, window="hour", timezone=timezone)
    p0, p1 = period.start_at, period.end_at
    hours = list(period.bounds)
    changes = set(
        PoolRate.objects.filter(effective_from__gt=p0, effective_from__lt=p1)
        .order_by()
        .values_list("effective_from", flat=True)
    )
    # Slices: the hours, cut again where a rate changes (a rate is constant in a slice).
    bounds = sorted(set(hours) | {c.astimezone(UTC) for c in changes})
    slice_hour = [bisect.bisect_right(hours, b) - 1 for b in bounds[:-1]]
    planned = [
        iv for ivs in unmeasured_pools_planned_uptime(p0, p1).values() for iv in ivs
    ]  # pools without measured uptime in the period use their schedule, as in the report
    slugs = dict(NodePool.objects.values_list("id", "slug"))
    rates = _rates(bounds)
    sql = _SQL.format(up_t=UptimeInterval._meta.db_table, run_t=GpuRun._meta.db_table)
    params = {
        "b": bounds,
        "n": len(bounds) - 1,
        "p0": p0,
        "p1": p1,
        "terminal": list(TERMINAL_RUN_STATUSES),
        "pn": [iv.node_id for iv in planned],
        "pp": [iv.pool_id for iv in planned],
        "ps": [iv.started_at for iv in planned],
        "pe": [iv.ended_at for iv in planned],
    }
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '128MB'")
        cur.execute("SET LOCAL jit = off")
        cur.execute(sql, params)
        rows = cur.fetchall()
    acc: dict[tuple[int, int], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for pool_id, i, up_s, busy_s, spot_s, warm_s in rows:
        rate = rates.get(pool_id, [None] * len(slice_hour))[i - 1]
        a = acc[(pool_id, slice_hour[i - 1])]
        a[0] += Decimal(up_s)
        a[1] += Decimal(busy_s)
        a[2] += _cost(rate, Decimal(up_s), Decimal(spot_s), Decimal(warm_s))
    tz = ZoneInfo(timezone)
    out = []
    for (pool_id, win), (up_s, busy_s, cost) in acc.items():
        slug = slugs.get(pool_id, str(pool_id))
        if pools is not None and slug not in pools:
            continue
        at = hours[win]
        local = at.astimezone(tz)
        out.append(
            PoolHour(
                pool=slug,
                start=at,
                day=local.date(),
                hour=local.hour,
                uptime_s=up_s,
                busy_s=busy_s,
                cost_usd=cost,
            )
        )
    out.sort(key=lambda h: (h.pool, h.start))
    return out


# --- Aggregations for the charts -----------------------------------------------------------------


@dataclass(frozen=True)
class PoolDay:
    """One pool's local day (or week, for long periods): cost, uptime and busy hours."""

    pool: str
    day: date  # first day of the bucket
    uptime_hours: Decimal
    busy_hours: Decimal
    cost_usd: Decimal

    @property
    def idle_hours(self) -> Decimal:
        return self.uptime_hours - self.busy_hours

    @property
    def idle_fraction(self) -> Decimal | None:
        return None if not self.uptime_hours else self.idle_hours / self.uptime_hours


def bucket_of(day: date, weekly: bool) -> date:
    return day - timedelta(days=day.weekday()) if weekly else day


def pool_days(
    hours: list[PoolHour], start: date, end: date, *, weekly: bool = False
) -> dict[str, list[PoolDay]]:
    """Per pool, every day (or ISO week) of [start, end) in order, zeros included."""
    sums: dict[tuple[str, date], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    pools = sorted({h.pool for h in hours})
    for h in hours:
        acc = sums[(h.pool, bucket_of(h.day, weekly))]
        acc[0] += h.uptime_s
        acc[1] += h.busy_s
        acc[2] += h.cost_usd
    keys = sorted({bucket_of(start + timedelta(days=i), weekly) for i in range((end - start).days)})
    out: dict[str, list[PoolDay]] = {}
    for pool in pools:
        series = []
        for key in keys:
            up, busy, cost = sums.get((pool, key), (ZERO, ZERO, ZERO))
            series.append(PoolDay(pool, key, up / HOUR, busy / HOUR, cost))
        out[pool] = series
    return out


@dataclass(frozen=True)
class HeatCell:
    hour: int
    uptime_hours: Decimal
    idle_hours: Decimal

    @property
    def idle_fraction(self) -> Decimal | None:
        return None if not self.uptime_hours else self.idle_hours / self.uptime_hours


def idle_heatmap(
    hours: list[PoolHour], start: date, end: date, *, weekly: bool = False
) -> dict[str, list[tuple[date, list[HeatCell]]]]:
    """Per pool: rows of days (or weeks) × 24 local hours of idle node-hours over uptime
    node-hours (a cell without uptime has `idle_fraction` None)."""
    sums: dict[tuple[str, date, int], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    pools = sorted({h.pool for h in hours})
    for h in hours:
        acc = sums[(h.pool, bucket_of(h.day, weekly), h.hour)]
        acc[0] += h.uptime_s
        acc[1] += h.idle_s
    keys = sorted({bucket_of(start + timedelta(days=i), weekly) for i in range((end - start).days)})
    out: dict[str, list[tuple[date, list[HeatCell]]]] = {}
    for pool in pools:
        rows = []
        for key in keys:
            cells = []
            for hour in range(24):
                up, idle = sums.get((pool, key, hour), (ZERO, ZERO))
                cells.append(HeatCell(hour, up / HOUR, idle / HOUR))
            rows.append((key, cells))
        out[pool] = rows
    return out


# --- The fleet at a glance (staff landing page) ----------------------------------------------


@dataclass(frozen=True)
class PoolFleet:
    """One pool now: its nodes, how many are up — an uptime interval covering now, or a
    fleet-managed node billed at its running rate now — and how many are warm (managed, stopped
    but leased), and the rates in force."""

    slug: str
    gpu_type: str
    nodes: int
    nodes_up: int
    hourly_rate_usd: Decimal | None
    warm_hourly_rate_usd: Decimal | None
    rate_since: datetime | None
    set_points: int
    nodes_warm: int = 0

    @property
    def cost_per_hour_usd(self) -> Decimal | None:
        """What the nodes up (and warm) now cost per hour at the rates in force."""
        if self.hourly_rate_usd is None:
            return None
        return self.hourly_rate_usd * self.nodes_up + (self.warm_hourly_rate_usd or 0) * (
            self.nodes_warm
        )


def fleet(*, now: datetime | None = None) -> list[PoolFleet]:
    """Every pool with its node count, nodes up and warm at `now` and current rate (five small
    queries)."""
    from django.db.models import Count
    from django.utils import timezone

    from infra_costs.models import Node, RateKind
    from infra_costs.schedule import active_set_points

    now = now or timezone.now()
    pools = list(
        NodePool.objects.annotate(
            node_count=Count("nodes", distinct=True),
        ).order_by("slug")
    )
    up_nodes: dict[int, set[int]] = defaultdict(set)
    for pool_id, node_id in (
        UptimeInterval.objects.filter(started_at__lte=now, ended_at__gt=now)
        .exclude(rate_kind=RateKind.WARM)
        .values_list("pool_id", "node_id")
        .distinct()
    ):
        up_nodes[pool_id].add(node_id)
    warm: dict[int, int] = defaultdict(int)
    for pool_id, node_id, kind in Node.objects.exclude(billing_kind="").values_list(
        "pool_id", "id", "billing_kind"
    ):
        if kind == RateKind.WARM:
            warm[pool_id] += 1
        else:
            up_nodes[pool_id].add(node_id)
    rates = {
        r.pool_id: r
        for r in PoolRate.objects.filter(effective_from__lte=now)
        .order_by("pool_id", "-effective_from")
        .distinct("pool_id")
    }
    out = []
    for pool in pools:
        rate = rates.get(pool.pk)
        out.append(
            PoolFleet(
                slug=pool.slug,
                gpu_type=pool.gpu_type,
                nodes=pool.node_count,
                nodes_up=len(up_nodes.get(pool.pk, ())),
                nodes_warm=warm.get(pool.pk, 0),
                hourly_rate_usd=rate.hourly_rate_usd if rate else None,
                warm_hourly_rate_usd=rate.warm_hourly_rate_usd if rate else None,
                rate_since=rate.effective_from if rate else None,
                set_points=active_set_points(pool, now).count(),
            )
        )
    return out
