"""Unit costs: spec §3's allocation of infrastructure cost to models, per period.

    report = unit_cost_report(date(2026, 1, 5), date(2026, 1, 8), window="day")

The method (fixed by the spec — external checks recompute the same numbers):

* The period `[start, end)` (local dates of `timezone`) is cut into windows: local days or
  hours. Windows are further cut at rate changes into *slices*, so a rate is constant within
  a slice.
* Uptime: per node, the union of its intervals (overlaps count once), clipped to the period.
  A pool with uptime in the period is measured by it; a pool without uses its schedule
  (`infra_costs.schedule`); a pool with neither has no uptime.
* Jobs of the period: GPU runs that *finished* in `[start, end)`, clipped to start at the
  period's start. Succeeded, failed and cancelled runs are busy time; only succeeded ones weigh.
* Per pool and window: `cost` = uptime seconds × rate / 3600; `busy` = Σ per node of the union
  of its jobs ∩ its uptime; per model `weight` = its succeeded jobs' seconds in the window.
  A model's `allocated` = Σ_w cost · weight / Σ weight; a window's cost with no weight is the
  pool's *unallocated* cost.
* Fully loaded = allocated + the pool's unallocated cost split by the models' allocated cost
  on the pool (by their weight if that is all zero); a pool with no succeeded job in the
  period leaves its unallocated cost *unattributed*.
* Active cost = a succeeded job's seconds × rate (no idle). Idle policy `separate`: models get
  their active cost only; each pool's rest (idle, failed jobs) is one idle line.

On PostgreSQL the engine is set-based SQL (`_raw_sql`: temp tables, window functions,
`width_bucket` over the slice boundaries; no loop over jobs). Elsewhere (SQLite) a Python
sweep computes the same aggregates (`_raw_python`). Money is exact decimal throughout;
reported figures are rounded to 6 decimal places (largest remainder, so that Σ fully loaded
+ unattributed == infrastructure cost holds exactly in the report).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from django.db import connection, transaction

from config.errors import ValidationError
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from infra_costs.periods import Period, make_period
from infra_costs.registry import external_costs_for
from infra_costs.schedule import PlannedInterval, planned_uptime

IDLE_POLICIES = ("weighted", "separate")
TERMINAL = ("succeeded", "failed", "cancelled")
Q6 = Decimal("0.000001")
ZERO = Decimal(0)
HOUR = Decimal(3600)


# --- Inputs ---------------------------------------------------------------------------------------


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
    measured = set(
        UptimeInterval.objects.filter(started_at__lt=end_at, ended_at__gt=start_at)
        .order_by()
        .values_list("pool_id", flat=True)
        .distinct()
    )
    schedule_pools: set[int] = set()
    planned: list[PlannedInterval] = []
    for pool in (
        NodePool.objects.exclude(id__in=measured).filter(set_points__active=True).distinct()
    ):
        intervals = planned_uptime(pool, start_at, end_at)
        schedule_pools.add(pool.pk)
        planned.extend(intervals)
    return Inputs(period, bounds, slice_window, pools, schedule_pools, planned)


# --- Raw aggregates (exact) -------------------------------------------------------------------


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


def _secs(value) -> Decimal:
    """An interval (timedelta) or numeric seconds → exact Decimal seconds."""
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return Decimal(micro) / Decimal(1_000_000)


# --- The SQL engine ------------------------------------------------------------------------------

_TEMP = ("_uc_slices", "_uc_rates", "_uc_up", "_uc_up_sl", "_uc_g", "_uc_jw")


def _spread(table: str, keys: str) -> str:
    """Rows (keys, i, d) of a table aggregated by (first slice i_s, last slice i_e) — columns
    `n` (how many intervals), `d` (their length), `d_first`/`d_last` (their parts in the first
    and last slices, for crossing groups) — turned into length per slice."""
    k = ", ".join(f"g.{c.strip()}" for c in keys.split(","))
    return f"""
        SELECT {k}, g.i_s AS i, g.d FROM {table} g WHERE g.i_s = g.i_e
        UNION ALL SELECT {k}, g.i_s, g.d_first FROM {table} g WHERE g.i_s < g.i_e
        UNION ALL SELECT {k}, g.i_e, g.d_last FROM {table} g WHERE g.i_s < g.i_e
        UNION ALL SELECT {k}, sl.i, g.n * (sl.e - sl.s)
                  FROM {table} g
                  CROSS JOIN LATERAL generate_series(g.i_s + 1, g.i_e - 1) AS gs(i)
                  JOIN _uc_slices sl ON sl.i = gs.i
                  WHERE g.i_e > g.i_s + 1
    """


def _busy_sql() -> str:
    """Busy time per node: |union of its runs ∩ union of its uptime| and |union of its runs|.

    Per node, its runs (newest finish first: an index-only range scan of
    `run_node_finished_cover`, no sort) and its few uptime islands go through one window pass
    ordered by end, descending, carrying two running minima over the rows before:
    `pmin` = earliest start of the runs that end later, `umin` = start of the last island
    seen (islands are disjoint, so the minimum is the nearest one). Then:

    * a run [s, e) adds its *new part* [s, min(e, pmin)) — new parts are disjoint and their
      union is the union of the runs — of which [max(s, umin), min(e, pmin)) lies in the
      island that ends at or after e;
    * an island [c, d) adds [max(c, pmin), d): the part of it covered by runs ending later.

    Every busy instant is counted exactly once (this is the forward sweep "carry the running
    maximum of ends", run backwards in time, and does not depend on the order of ties).
    Scalar aggregates per node: no hash table, no sort beyond the node's own rows.
    """
    run_t, node_t = GpuRun._meta.db_table, Node._meta.db_table
    sql = f"""
        SELECT nd.id, nd.pool_id, agg.busy, agg.np
        FROM {node_t} nd
        CROSS JOIN LATERAL (
            SELECT sum(CASE WHEN w.k = 1 THEN
                           -- (greatest() ignores NULLs: no island seen yet is no busy time)
                           CASE WHEN w.umin IS NOT NULL AND w.b > greatest(w.s, w.umin)
                                THEN w.b - greatest(w.s, w.umin) END
                       ELSE
                           CASE WHEN w.pmin < w.e THEN w.e - greatest(w.s, w.pmin) END
                       END) AS busy,
                   sum(CASE WHEN w.k = 1 AND w.b > w.s THEN w.b - w.s END) AS np
            FROM (
                SELECT v.k, v.e, v.umin, v.pmin,
                       greatest(v.s, %(p0)s) AS s,
                       CASE WHEN v.pmin IS NULL OR v.pmin >= v.e THEN v.e
                            ELSE greatest(v.pmin, %(p0)s) END AS b
                FROM (
                    SELECT u.k, u.s, u.e,
                           min(u.s) FILTER (WHERE u.k = 1) OVER o AS pmin,
                           min(u.s) FILTER (WHERE u.k = 0) OVER o AS umin
                    FROM (
                        SELECT 1 AS k, r.started_at AS s, r.finished_at AS e
                        FROM {run_t} r
                        WHERE r.node_id = nd.id
                          AND r.finished_at > %(p0)s AND r.finished_at < %(p1)s
                          AND r.status = ANY(%(terminal)s)
                        UNION ALL
                        SELECT 0, t.s, t.e
                        FROM unnest(%(un)s::bigint[], %(us)s::timestamptz[],
                                    %(ue)s::timestamptz[]) AS t(node_id, s, e)
                        WHERE t.node_id = nd.id
                    ) u
                    WINDOW o AS (ORDER BY u.e DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                ) v
            ) w
        ) agg
    """
    return sql


def _helper_busy(conn_params: dict, snapshot: str, sql: str, params: dict) -> list[tuple]:
    """Run the busy pass on a connection of its own, on the caller's exported snapshot."""
    import psycopg

    with psycopg.connect(**{**conn_params, "autocommit": True}) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        conn.execute("SET LOCAL jit = off")
        conn.execute("SET LOCAL work_mem = '256MB'")
        rows = conn.execute(sql, params).fetchall()
        conn.execute("COMMIT")
    return rows


def _raw_sql(inp: Inputs, *, concurrent: bool | None = None) -> Raw:
    """The engine on PostgreSQL. Steps (temp tables, dropped at the end):

    1. slices (windows cut at rate changes) and the rate of each pool in each slice;
    2. uptime islands per node (overlaps merged) and uptime per (pool, slice);
    3. the weights: one hash aggregation of the period's runs by model, pool and (first slice,
       last slice), counting each final status — then spread over slices (few runs cross a
       bound);
    4. busy per node (`_busy_sql`). Outside a transaction it runs *concurrently* with 3 on a
       second connection that imports this transaction's snapshot (`pg_export_snapshot`), so
       both passes read the same data; inside one (tests, callers' atomic blocks) it runs here;
    5. small set-based queries turn these into cost, allocation and busy per pool.
    """
    p0, p1 = inp.period.start_at, inp.period.end_at
    b = inp.bounds
    run_t, up_t, rate_t = (
        GpuRun._meta.db_table,
        UptimeInterval._meta.db_table,
        PoolRate._meta.db_table,
    )
    params: dict[str, Any] = {
        "p0": p0,
        "p1": p1,
        "b": b,
        "terminal": list(TERMINAL),
        "pn": [iv.node_id for iv in inp.planned],
        "pp": [iv.pool_id for iv in inp.planned],
        "ps": [iv.started_at for iv in inp.planned],
        "pe": [iv.ended_at for iv in inp.planned],
    }
    if concurrent is None:
        concurrent = not connection.in_atomic_block
    raw = Raw()
    helper = None
    with transaction.atomic(), connection.cursor() as cur:
        snapshot = None
        if concurrent:
            # First statement of the transaction: every later one sees the same data.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
        cur.execute("SET LOCAL work_mem = '256MB'")
        # JIT would compile for seconds on these plans' row estimates and gain nothing.
        cur.execute("SET LOCAL jit = off")
        for t in _TEMP:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{t}")
        cur.execute(
            """
            CREATE TEMP TABLE _uc_slices ON COMMIT DROP AS
            SELECT i::int AS i, win, s, e
            FROM unnest(%(s)s::timestamptz[], %(e)s::timestamptz[], %(w)s::int[])
                 WITH ORDINALITY AS t(s, e, win, i)
            """,
            {"s": b[:-1], "e": b[1:], "w": inp.slice_window},
        )
        # 1. The rate in force in each slice of each pool (none before its first rate).
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_rates ON COMMIT DROP AS
            WITH r AS (
                SELECT pool_id, hourly_rate_usd AS rate, effective_from AS f,
                       lead(effective_from) OVER (PARTITION BY pool_id ORDER BY effective_from) AS t
                FROM {rate_t}
            )
            SELECT r.pool_id, sl.i, r.rate
            FROM r JOIN _uc_slices sl ON sl.s >= r.f AND (r.t IS NULL OR sl.s < r.t)
            WHERE r.f < %(p1)s AND (r.t IS NULL OR r.t > %(p0)s)
            """,
            params,
        )
        # 2. Uptime islands per node: measured intervals (and planned ones of schedule pools),
        # clipped to the period, overlaps merged (gaps and islands over a running maximum).
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_up ON COMMIT DROP AS
            WITH raw AS (
                SELECT u.node_id, u.pool_id, greatest(u.started_at, %(p0)s) AS s,
                       least(u.ended_at, %(p1)s) AS e
                FROM {up_t} u WHERE u.started_at < %(p1)s AND u.ended_at > %(p0)s
                UNION ALL
                SELECT node_id, pool_id, s, e
                FROM unnest(%(pn)s::bigint[], %(pp)s::bigint[], %(ps)s::timestamptz[],
                            %(pe)s::timestamptz[]) AS t(node_id, pool_id, s, e)
            ), m AS (
                SELECT node_id, pool_id, s, e,
                       max(e) OVER (PARTITION BY node_id ORDER BY s
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pm
                FROM raw
            ), g AS (
                SELECT node_id, pool_id, s, e,
                       count(*) FILTER (WHERE pm IS NULL OR s > pm)
                           OVER (PARTITION BY node_id ORDER BY s ROWS UNBOUNDED PRECEDING) AS grp
                FROM m
            )
            SELECT node_id, min(pool_id) AS pool_id, min(s) AS s, max(e) AS e
            FROM g GROUP BY node_id, grp
            """,
            params,
        )
        cur.execute(
            """
            CREATE TEMP TABLE _uc_up_sl ON COMMIT DROP AS
            SELECT u.pool_id, gs.i,
                   sum(least(u.e, (%(b)s::timestamptz[])[gs.i + 1])
                       - greatest(u.s, (%(b)s::timestamptz[])[gs.i])) AS d
            FROM _uc_up u
            CROSS JOIN LATERAL generate_series(width_bucket(u.s, %(b)s::timestamptz[]),
                                               width_bucket(u.e, %(b)s::timestamptz[])) gs(i)
            GROUP BY u.pool_id, gs.i
            """,
            params,
        )
        # 4. Busy per node — started first so that it overlaps with the weights.
        cur.execute("SELECT node_id, s, e FROM _uc_up ORDER BY node_id, s")
        islands = cur.fetchall()
        busy_sql = _busy_sql()
        busy_params = {
            "p0": p0,
            "p1": p1,
            "terminal": list(TERMINAL),
            "un": [i[0] for i in islands],
            "us": [i[1] for i in islands],
            "ue": [i[2] for i in islands],
        }
        if snapshot is not None:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=1)
            helper = pool.submit(
                _helper_busy, connection.get_connection_params(), snapshot, busy_sql, busy_params
            )
            pool.shutdown(wait=False)
        # 3. The weights: runs of the period by model, pool, (first, last) slice.
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_g ON COMMIT DROP AS
            SELECT x.model, x.pool_id, x.i_s, x.i_e,
                   count(*) FILTER (WHERE x.status = 'succeeded') AS n,
                   count(*) FILTER (WHERE x.status = 'failed') AS n_failed,
                   count(*) FILTER (WHERE x.status = 'cancelled') AS n_cancelled,
                   sum(x.e - x.s) FILTER (WHERE x.status = 'succeeded') AS d,
                   sum(CASE WHEN x.i_s < x.i_e
                            THEN (%(b)s::timestamptz[])[x.i_s + 1] - x.s END)
                       FILTER (WHERE x.status = 'succeeded') AS d_first,
                   sum(CASE WHEN x.i_s < x.i_e
                            THEN x.e - (%(b)s::timestamptz[])[x.i_e] END)
                       FILTER (WHERE x.status = 'succeeded') AS d_last
            FROM (
                SELECT r.model_slug AS model, r.pool_id, r.status,
                       greatest(r.started_at, %(p0)s) AS s, r.finished_at AS e,
                       width_bucket(greatest(r.started_at, %(p0)s), %(b)s::timestamptz[]) AS i_s,
                       width_bucket(r.finished_at, %(b)s::timestamptz[]) AS i_e
                FROM {run_t} r
                WHERE r.finished_at >= %(p0)s AND r.finished_at < %(p1)s
                  AND r.status = ANY(%(terminal)s)
            ) x
            GROUP BY x.model, x.pool_id, x.i_s, x.i_e
            """,
            params,
        )
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_jw ON COMMIT DROP AS
            SELECT model, pool_id, i, sum(d) AS d
            FROM ({_spread("(SELECT * FROM _uc_g WHERE n > 0)", "model, pool_id")}) x
            GROUP BY model, pool_id, i
            """,
            params,
        )
        busy_rows = None
        if helper is not None:
            try:
                busy_rows = helper.result()
            except Exception:  # no second connection to be had: do it here
                busy_rows = None
        if busy_rows is None:
            cur.execute(busy_sql, busy_params)
            busy_rows = cur.fetchall()
        for node_id, pool_id, busy, new_parts in busy_rows:
            inside, runs = _secs(busy), _secs(new_parts)
            if inside:
                raw.pools.setdefault(pool_id, RawPool()).busy_s += inside
            if runs - inside > 0:
                raw.outside.append((pool_id, node_id, runs - inside))
        # 5. Exact per-slice aggregates; cost and allocation in `_allocate` (shared).
        cur.execute("SELECT pool_id, i, rate FROM _uc_rates")
        rates = {(pool_id, i - 1): r for pool_id, i, r in cur.fetchall()}
        cur.execute("SELECT pool_id, i, extract(epoch FROM d) FROM _uc_up_sl WHERE d > '0'")
        up_pw = {(pool_id, i - 1): _secs(secs) for pool_id, i, secs in cur.fetchall()}
        cur.execute("SELECT model, pool_id, i, extract(epoch FROM d) FROM _uc_jw WHERE d > '0'")
        weight = {(m, pool_id, i - 1): _secs(secs) for m, pool_id, i, secs in cur.fetchall()}
        cur.execute(
            "SELECT model, pool_id, sum(n), sum(n_failed), sum(n_cancelled) FROM _uc_g "
            "GROUP BY model, pool_id"
        )
        for model, pool_id, *ns in cur.fetchall():
            counts = raw.counts.setdefault(model, {})
            for status, n in zip(TERMINAL, ns, strict=True):
                counts[status] = counts.get(status, 0) + int(n)
            raw.pools.setdefault(pool_id, RawPool()).jobs += sum(int(n) for n in ns)
        for t in _TEMP:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{t}")
    _allocate(raw, inp, up_pw, weight, lambda pool_id, i: rates.get((pool_id, i)))
    return raw


# --- The Python engine (SQLite, and a cross-check) -------------------------------------------


def _merge(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[list[datetime]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _intersect(a: list[tuple], b: list[tuple]) -> list[tuple[datetime, datetime]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _pieces(bounds: list[datetime], s: datetime, e: datetime):
    """(slice index, seconds) of [s, e) cut at the slice bounds (s, e inside the period)."""
    i = bisect.bisect_right(bounds, s) - 1
    while i < len(bounds) - 1 and bounds[i] < e:
        lo, hi = max(s, bounds[i]), min(e, bounds[i + 1])
        if hi > lo:
            yield i, _secs(hi - lo)
        i += 1


def _raw_python(inp: Inputs) -> Raw:
    p0, p1 = inp.period.start_at, inp.period.end_at
    bounds = inp.bounds
    rates_by_pool: dict[int, list[tuple[datetime, Decimal]]] = defaultdict(list)
    for pool_id, f, rate in PoolRate.objects.order_by("pool_id", "effective_from").values_list(
        "pool_id", "effective_from", "hourly_rate_usd"
    ):
        rates_by_pool[pool_id].append((f, rate))

    def rate(pool_id: int, i: int) -> Decimal | None:
        versions = rates_by_pool.get(pool_id, [])
        k = bisect.bisect_right([f for f, _ in versions], bounds[i]) - 1
        return versions[k][1] if k >= 0 else None

    up_raw: dict[int, list] = defaultdict(list)
    node_pool: dict[int, int] = {}
    for node_id, pool_id, s, e in UptimeInterval.objects.filter(
        started_at__lt=p1, ended_at__gt=p0
    ).values_list("node_id", "pool_id", "started_at", "ended_at"):
        up_raw[node_id].append((max(s, p0), min(e, p1)))
        node_pool[node_id] = pool_id
    for iv in inp.planned:
        up_raw[iv.node_id].append((iv.started_at, iv.ended_at))
        node_pool[iv.node_id] = iv.pool_id
    up = {n: _merge(v) for n, v in up_raw.items()}

    raw = Raw()
    up_pw: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # (pool, slice) → seconds
    for node_id, islands in up.items():
        for s, e in islands:
            for i, secs in _pieces(bounds, s, e):
                up_pw[(node_pool[node_id], i)] += secs

    jobs_by_node: dict[int, list] = defaultdict(list)
    weight: dict[tuple[str, int, int], Decimal] = defaultdict(Decimal)  # (model, pool, slice)
    for model, pool_id, node_id, status, s, e in GpuRun.objects.filter(
        finished_at__gte=p0, finished_at__lt=p1, status__in=TERMINAL
    ).values_list("model_slug", "pool_id", "node_id", "status", "started_at", "finished_at"):
        s = max(s, p0)
        counts = raw.counts.setdefault(model, {})
        counts[status] = counts.get(status, 0) + 1
        raw.pools.setdefault(pool_id, RawPool()).jobs += 1
        if e > s:
            jobs_by_node[node_id].append((s, e))
            node_pool.setdefault(node_id, pool_id)
        if status == "succeeded":
            for i, secs in _pieces(bounds, s, e):
                weight[(model, pool_id, i)] += secs

    busy_pw: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for node_id, intervals in jobs_by_node.items():
        islands = _merge(intervals)
        inside = _intersect(islands, up.get(node_id, []))
        for s, e in inside:
            for i, secs in _pieces(bounds, s, e):
                busy_pw[(node_pool[node_id], i)] += secs
        outside = sum((_secs(e - s) for s, e in islands), ZERO) - sum(
            (_secs(e - s) for s, e in inside), ZERO
        )
        if outside > 0:
            raw.outside.append((node_pool[node_id], node_id, outside))

    for (pool_id, _i), secs in busy_pw.items():
        raw.pools.setdefault(pool_id, RawPool()).busy_s += secs
    _allocate(raw, inp, up_pw, weight, rate)
    return raw


def _allocate(raw: Raw, inp: Inputs, up_pw: dict, weight: dict, rate) -> None:
    """Cost, allocation and active cost from exact per-slice aggregates — the same code for
    both engines, so they agree to the last digit. A loop over (pool | model, pool) × slice,
    never over jobs.

    `up_pw`: (pool, slice) → uptime seconds; `weight`: (model, pool, slice) → seconds of
    succeeded runs; `rate(pool, slice)` → hourly rate or None. Products seconds × rate are
    exact; each division is done once, late, at 50 significant digits.
    """
    win_of = inp.slice_window
    cost_x: dict[tuple[int, int], Decimal] = defaultdict(Decimal)  # (pool, window) → Σ s × $/h
    for (pool_id, i), secs in up_pw.items():
        pool = raw.pools.setdefault(pool_id, RawPool())
        r = rate(pool_id, i)
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
        r = rate(pool_id, i)
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


# --- The report ---------------------------------------------------------------------------------


def q6(value: Decimal) -> Decimal:
    out = value.quantize(Q6, rounding=ROUND_HALF_UP)
    return out if out else abs(out)  # no "-0.000000"


def fmt(value: Decimal | None) -> str | None:
    return None if value is None else f"{q6(value):f}"


def apportion(values: list[Decimal], total: Decimal) -> list[Decimal]:
    """Round each value to 6 dp so that the rounded values sum to q6(total) (largest remainder;
    each rounded value is within 1e-6 of its exact value). Falls back to plain rounding when
    the values do not add up to the total."""
    target = q6(total)
    floors = [v.quantize(Q6, rounding=ROUND_FLOOR) for v in values]
    units = int(((target - sum(floors, ZERO)) / Q6).to_integral_value())
    if not 0 <= units <= len(values):
        return [q6(v) for v in values]
    order = sorted(range(len(values)), key=lambda k: (values[k] - floors[k], -k), reverse=True)
    out = list(floors)
    for k in order[:units]:
        out[k] += Q6
    return [v if v else abs(v) for v in out]


def _hours(secs: Decimal) -> Decimal:
    return secs / HOUR


def _div(a: Decimal, b: Decimal) -> Decimal | None:
    return None if not b else a / b


def assemble(
    inp: Inputs, raw: Raw, *, idle_policy: str, external: dict[str, Decimal] | None = None
) -> dict[str, Any]:
    period = inp.period
    models = sorted(raw.counts)
    external_per_gen = external if external is not None else external_costs_for(models)
    node_names = dict(
        Node.objects.filter(id__in=[n for _, n, _ in raw.outside]).values_list("id", "name")
    )
    pool_ids = sorted(
        (p for p, r in raw.pools.items() if r.uptime_s or r.cost or r.jobs),
        key=lambda p: inp.pools.get(p, str(p)),
    )
    infra = sum((raw.pools[p].cost for p in pool_ids), ZERO)

    # Per model: allocated, fully loaded (exact).
    alloc: dict[str, Decimal] = defaultdict(Decimal)
    fully: dict[str, Decimal] = defaultdict(Decimal)
    active: dict[str, Decimal] = defaultdict(Decimal)
    gpu_s: dict[str, Decimal] = defaultdict(Decimal)
    active_on_pool: dict[int, Decimal] = defaultdict(Decimal)
    for (model, pool_id), mp in raw.model_pool.items():
        active[model] += mp.active
        gpu_s[model] += mp.weight_s
        active_on_pool[pool_id] += mp.active
    unattributed = ZERO
    pool_alloc_usd: dict[int, Decimal] = {}
    pool_unalloc_usd: dict[int, Decimal] = {}
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        on_pool = {m: mp for (m, p), mp in raw.model_pool.items() if p == pool_id}
        if idle_policy == "separate":
            pool_alloc_usd[pool_id] = active_on_pool[pool_id]
            pool_unalloc_usd[pool_id] = pool.cost - active_on_pool[pool_id]
            continue
        pool_alloc_usd[pool_id] = pool.allocated
        pool_unalloc_usd[pool_id] = pool.unallocated
        total_alloc = sum((mp.allocated for mp in on_pool.values()), ZERO)
        total_weight = sum((mp.weight_s for mp in on_pool.values()), ZERO)
        for model, mp in on_pool.items():
            alloc[model] += mp.allocated
            fully[model] += mp.allocated
            if total_alloc > 0:
                fully[model] += pool.unallocated * mp.allocated / total_alloc
            elif total_weight > 0:
                fully[model] += pool.unallocated * mp.weight_s / total_weight
        if total_alloc <= 0 and total_weight <= 0:
            unattributed += pool.unallocated
    if idle_policy == "separate":
        for model in models:
            alloc[model] = fully[model] = active[model]
        unattributed = infra - sum((fully[m] for m in models), ZERO)

    rounded = apportion([fully[m] for m in models] + [unattributed], infra)
    fully_r, unattributed_r = dict(zip(models, rounded[:-1], strict=True)), rounded[-1]

    model_rows = []
    total_gens = 0
    total_fully = ZERO
    total_external = ZERO
    for model in models:
        gens = raw.counts[model].get("succeeded", 0)
        ext = external_per_gen.get(model, ZERO) * gens
        total_gens += gens
        total_fully += fully[model]
        total_external += ext
        model_rows.append(
            {
                "model": model,
                "generations": gens,
                "failed": raw.counts[model].get("failed", 0),
                "gpu_hours": fmt(_hours(gpu_s[model])),
                "active_cost_usd": fmt(active[model]),
                "allocated_cost_usd": fmt(alloc[model]),
                "fully_loaded_cost_usd": fmt(fully_r[model]),
                "external_cost_usd": fmt(ext),
                "cost_per_generation_usd": fmt(_div(fully[model] + ext, Decimal(gens))),
                "active_cost_per_generation_usd": fmt(_div(active[model] + ext, Decimal(gens))),
            }
        )

    pool_rows, idle_rows = [], []
    total_up = total_busy = ZERO
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        slug = inp.pools.get(pool_id, str(pool_id))
        idle_s = pool.uptime_s - pool.busy_s
        total_up += pool.uptime_s
        total_busy += pool.busy_s
        a_r, u_r = apportion([pool_alloc_usd[pool_id], pool_unalloc_usd[pool_id]], pool.cost)
        pool_rows.append(
            {
                "pool": slug,
                "uptime_hours": fmt(_hours(pool.uptime_s)),
                "busy_hours": fmt(_hours(pool.busy_s)),
                "idle_hours": fmt(_hours(idle_s)),
                "idle_fraction": fmt(_div(idle_s, pool.uptime_s)),
                "cost_usd": fmt(pool.cost),
                "allocated_usd": fmt(a_r),
                "unallocated_usd": fmt(u_r),
            }
        )
        if idle_policy == "separate":
            idle_rows.append(
                {
                    "pool": slug,
                    "idle_hours": fmt(_hours(idle_s)),
                    "idle_cost_usd": fmt(u_r),
                }
            )

    warnings = _warnings(inp, raw, pool_ids, node_names, pool_unalloc_usd, idle_policy)
    report: dict[str, Any] = {
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "start_at": period.start_at.isoformat(),
            "end_at": period.end_at.isoformat(),
            "timezone": period.timezone,
            "window": period.window,
            "windows": len(period.bounds) - 1,
            "idle_policy": idle_policy,
        },
        "pools": pool_rows,
        "models": model_rows,
        "totals": {
            "infra_cost_usd": fmt(infra),
            "generations": total_gens,
            "unattributed_usd": fmt(unattributed_r),
            "weighted_avg_cost_per_generation_usd": fmt(
                _div(total_fully + total_external, Decimal(total_gens))
            ),
            "idle_fraction": fmt(_div(total_up - total_busy, total_up)),
        },
        "warnings": warnings,
    }
    if idle_policy == "separate":
        report["idle"] = idle_rows
    return report


def _warnings(inp, raw, pool_ids, node_names, pool_unalloc, idle_policy) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pool_id in sorted(inp.schedule_pools & set(pool_ids), key=lambda p: inp.pools[p]):
        slug = inp.pools[pool_id]
        out.append(
            {
                "code": "schedule_used",
                "pool": slug,
                "message": f"Pool {slug} has no recorded uptime in the period: its schedule "
                "(planned node-hours) was used.",
            }
        )
    for pool_id, node_id, secs in sorted(
        raw.outside, key=lambda o: (inp.pools.get(o[0], ""), node_names.get(o[1], str(o[1])))
    ):
        slug, node = inp.pools.get(pool_id, str(pool_id)), node_names.get(node_id, str(node_id))
        out.append(
            {
                "code": "job_outside_uptime",
                "pool": slug,
                "node": node,
                "seconds": fmt(secs),
                "message": f"Node {node} ({slug}) ran jobs for {q6(secs).normalize():f} s "
                "outside any uptime: they still weigh, but that time has no cost.",
            }
        )
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        slug = inp.pools.get(pool_id, str(pool_id))
        if pool.unpriced_s > 0:
            out.append(
                {
                    "code": "no_rate",
                    "pool": slug,
                    "seconds": fmt(pool.unpriced_s),
                    "message": f"Pool {slug} has {q6(pool.unpriced_s).normalize():f} s of uptime "
                    "or jobs before its first rate: counted at $0.",
                }
            )
        if idle_policy == "separate" and pool_unalloc[pool_id] < 0:
            out.append(
                {
                    "code": "active_exceeds_cost",
                    "pool": slug,
                    "message": f"Jobs' active cost on pool {slug} exceeds its cost (jobs outside "
                    "uptime or running concurrently on one node): its idle line is negative.",
                }
            )
    return out


# --- Entry point --------------------------------------------------------------------------------


def parse_idle_policy(value: str) -> str:
    if value not in IDLE_POLICIES:
        raise ValidationError(
            f"idle_policy must be one of {', '.join(IDLE_POLICIES)}.",
            errors={"idle_policy": [f"Must be one of: {', '.join(IDLE_POLICIES)}."]},
        )
    return value


def compute_raw(inp: Inputs, *, engine: str = "auto") -> Raw:
    if engine == "auto":
        engine = "sql" if connection.vendor == "postgresql" else "python"
    if engine == "sql":
        return _raw_sql(inp)
    if engine == "python":
        return _raw_python(inp)
    raise ValueError(f"Unknown engine {engine!r}")


def unit_cost_report(
    start: date,
    end: date,
    *,
    window: str = "day",
    idle_policy: str = "weighted",
    timezone: str = "UTC",
    engine: str = "auto",
) -> dict[str, Any]:
    """The unit-cost report of spec §5 (JSON-ready: decimals as 6-dp strings)."""
    parse_idle_policy(idle_policy)
    period = make_period(start, end, window=window, timezone=timezone)
    with localcontext() as ctx:
        ctx.prec = 50
        inp = gather_inputs(period)
        raw = compute_raw(inp, engine=engine)
        return assemble(inp, raw, idle_policy=idle_policy)
