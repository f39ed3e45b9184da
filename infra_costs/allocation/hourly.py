"""Per-hour aggregates of the unit-cost report: spec §3's exact figures per UTC hour, kept in
tables (`CostHour*`) so that a report over a year reads ~9k hours instead of every run.

Per hour (all figures exact, integer microseconds):

* `CostHourUptime` (pool, kind): per node the union of its uptime intervals of that kind;
* `CostHourNode` (node): busy = |union of its terminal runs ∩ union of its uptime (all kinds)|,
  runs = |union of its runs| (job time outside uptime is runs − busy) and `max_finish`, the
  latest finish of the runs overlapping the hour;
* `CostHourModel` (pool, model): the succeeded runs' seconds inside the hour (the weight) and
  the runs that *finished* in the hour, per final status.

Lengths of unions are additive over disjoint hours, and so are weights and counts, so a
period's figures are sums of its hours' — with one exception: a period takes only runs that
finished before its end, so an hour overlapped by a run finishing at or after the end
(`max_finish`) is recomputed with that cut-off. Rates are applied when reporting (slices at
rate changes on whole hours cost nothing extra).

Maintenance: triggers (migration 0006) mark every hour a write to the runs or the uptime
touches dirty (`CostHourDirty`) — a live run's finish adds one `INSERT … ON CONFLICT DO
NOTHING` to its `UPDATE`. `refresh` recomputes the dirty hours set-based (imports call it in
their transaction); a report recomputes dirty hours on the fly and reads the rest. Recomputing
from the source tables (never incrementing) makes it idempotent: a re-import changes nothing.

Frozen hours: those of a detached month of runs (`DetachedRunMonth`, `infra_costs.partitions`)
are never recomputed, as their runs are no longer in the table. The refresh drops their dirty
marks and the report reads their stored aggregates (`_NOT_FROZEN`: an anti-join on that tiny
table, at refresh and report time; the marking triggers, on a live run's path, are unchanged).

Periods whose windows or rate changes are not on whole UTC hours (time zones with a
half-hour offset, a rate change at 10:30) and periods that use a pool's schedule are computed
by the full engine (`sql.raw_aggregates`); the results are the same either way.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from infra_costs.allocation.method import Raw, RawPool, allocate, kind_rate
from infra_costs.allocation.windows import Inputs
from infra_costs.models import (
    TERMINAL_RUN_STATUSES,
    CostHourDirty,
    CostHourModel,
    CostHourNode,
    CostHourUptime,
    CostRunSpan,
    DetachedRunMonth,
    GpuRun,
    Node,
    NodePool,
    PoolRate,
    UptimeInterval,
)

HOUR = timedelta(hours=1)
MICRO = Decimal(1_000_000)
_TEMP = ("_ch_h", "_ch_rng", "_ch_runs", "_ch_isl", "_ch_up", "_ch_node", "_ch_model")


# Microseconds of a sum of pieces [s, e), exact: the intervals are summed (64-bit microseconds)
# and turned into a number once per group, not per row (`numeric` per row: ~0.4 s per 1M).
def _us_sum(s: str, e: str, where: str = "") -> str:
    flt = f" FILTER (WHERE {where})" if where else ""
    return f"(extract(epoch FROM sum({e} - {s}){flt}) * 1000000)::bigint"


# The latest end of the pieces (or islands) of the same (hour, node) that start before this one.
_PREV_END = (
    "max(e) OVER (PARTITION BY hour, node_id ORDER BY s "
    "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
)
# `{h}`: an hour not frozen (not an hour of a detached month of runs).
_NOT_FROZEN = (
    f"NOT EXISTS (SELECT 1 FROM {DetachedRunMonth._meta.db_table} fz "
    "WHERE {h} >= fz.frozen_from AND {h} < fz.frozen_until)"
)


def eligible(inp: Inputs) -> bool:
    """Can this period be answered from hours? Every slice bound on a whole UTC hour and no
    pool measured by its schedule."""
    if inp.planned:
        return False
    return all(b.minute == 0 and b.second == 0 and b.microsecond == 0 for b in inp.bounds)


def _span_us(cur) -> int:
    cur.execute(f"SELECT max_us FROM {CostRunSpan._meta.db_table} WHERE id = 1")
    row = cur.fetchone()
    if row is not None:
        return int(row[0])
    cur.execute(
        f"SELECT coalesce((extract(epoch FROM max(finished_at - started_at)) * 1000000)::bigint,"
        f" 0) FROM {GpuRun._meta.db_table}"
    )
    return int(cur.fetchone()[0])


def _compute(cur, *, cutoff: datetime | None) -> None:
    """The aggregates of the hours in temp table `_ch_h` into temp tables `_ch_up`, `_ch_node`
    and `_ch_model` (the shapes of the stored tables). `cutoff`: only runs that finished before
    it (a report's period end); None for the stored figures. The session's TimeZone is UTC
    (the callers `SET LOCAL` it): the 2-argument `date_trunc` cuts UTC hours without a time
    zone lookup per row."""
    run_t, up_t, node_t, pool_t = (
        GpuRun._meta.db_table,
        UptimeInterval._meta.db_table,
        Node._meta.db_table,
        NodePool._meta.db_table,
    )
    cur.execute("SELECT min(hour), max(hour) FROM _ch_h")
    hmin, hlast = cur.fetchone()
    if hmin is None:
        hmin = hlast = datetime(2000, 1, 1, tzinfo=UTC)
    hmax = hlast + HOUR
    span = timedelta(microseconds=_span_us(cur))
    params: dict[str, Any] = {
        "hmin": hmin,
        "hmax": hmax,
        "span": span + timedelta(microseconds=1),
        "cutoff": cutoff,
        "terminal": list(TERMINAL_RUN_STATUSES),
    }
    # Runs overlapping the hours (or finishing in one: counts), cut into their hours. Found per
    # pool and run of consecutive hours [a, b) by the index (pool, finished_at): such a run
    # finished in [a, b + the longest run's length) and started before b.
    cur.execute(
        """
        CREATE TEMP TABLE _ch_rng ON COMMIT DROP AS
        SELECT min(hour) AS a, max(hour) + interval '1 hour' AS b
        FROM (SELECT hour, hour - row_number() OVER (ORDER BY hour) * interval '1 hour' AS g
              FROM _ch_h) x
        GROUP BY g
        """
    )
    # (a run can be found by two ranges closer than the longest run: then deduplicated)
    distinct = "DISTINCT" if cur.rowcount > 1 else ""
    cur.execute("ANALYZE _ch_rng")
    cur.execute("SELECT count(*) FROM _ch_h")
    few = cur.fetchone()[0] <= 24 * 7
    if few:
        # Up to a week of hours (live runs, a report's dirty hours): one index range scan per
        # (range, pool), the subquery kept apart; its result is kept for the two uses below.
        cand = f"""
            SELECT {distinct} r.id, r.node_id, r.pool_id, r.model_slug, r.status,
                   r.started_at, r.finished_at
            FROM _ch_rng rng CROSS JOIN {pool_t} p
            CROSS JOIN LATERAL (
                SELECT * FROM {run_t} r
                WHERE r.pool_id = p.id
                  AND r.finished_at >= rng.a AND r.finished_at < rng.b + %(span)s
                  AND r.started_at < rng.b
                OFFSET 0
            ) r
            WHERE r.status = ANY(%(terminal)s)
              AND (%(cutoff)s::timestamptz IS NULL OR r.finished_at < %(cutoff)s::timestamptz)
        """
    else:
        # More (imports): every run overlapping [first hour, last hour + 1 h) once, by a
        # sequential scan (faster than visiting most runs by an index); the pieces outside
        # the dirty hours are left out by the join below. Scanned once per use below (by
        # parallel workers) rather than kept in a temporary store: 1.67 → 1.46 s on 1M runs.
        cand = f"""
            SELECT r.id, r.node_id, r.pool_id, r.model_slug, r.status,
                   r.started_at, r.finished_at
            FROM {run_t} r
            WHERE r.finished_at >= %(hmin)s AND r.started_at < %(hmax)s
              AND r.status = ANY(%(terminal)s)
              AND (%(cutoff)s::timestamptz IS NULL OR r.finished_at < %(cutoff)s::timestamptz)
        """
    # Cut into their hours: the start's hour for every run, and the later hours (up to the
    # finish's) by generate_series only for the runs that cross an hour boundary.
    cur.execute(
        f"""
        CREATE TEMP TABLE _ch_runs ON COMMIT DROP AS
        WITH cand AS {"MATERIALIZED" if few else "NOT MATERIALIZED"} ({cand}), pieces AS (
            SELECT date_trunc('hour', r.started_at) AS hour, r.* FROM cand r
            UNION ALL
            SELECT gs.hour, r.* FROM cand r
            CROSS JOIN LATERAL generate_series(date_trunc('hour', r.started_at)
                                               + interval '1 hour',
                                               r.finished_at, interval '1 hour') AS gs(hour)
            WHERE r.finished_at >= date_trunc('hour', r.started_at) + interval '1 hour'
        )
        SELECT h.hour, r.node_id, r.pool_id, r.model_slug, r.status, r.finished_at AS f,
               greatest(r.started_at, h.hour) AS s,
               least(r.finished_at, h.hour + interval '1 hour') AS e
        FROM pieces r JOIN _ch_h h ON h.hour = r.hour
        """,
        params,
    )
    cur.execute("ANALYZE _ch_runs")
    # Uptime islands per (hour, node, kind): the intervals cut to the hour, overlaps merged.
    cur.execute(
        f"""
        CREATE TEMP TABLE _ch_isl ON COMMIT DROP AS
        WITH raw AS (
            SELECT h.hour, u.node_id, u.pool_id, u.rate_kind AS kind,
                   greatest(u.started_at, h.hour) AS s,
                   least(u.ended_at, h.hour + interval '1 hour') AS e
            FROM {up_t} u
            CROSS JOIN LATERAL generate_series(date_trunc('hour', u.started_at),
                                               u.ended_at - interval '1 microsecond',
                                               interval '1 hour') AS gs(hour)
            JOIN _ch_h h ON h.hour = gs.hour
            WHERE u.started_at < %(hmax)s AND u.ended_at > %(hmin)s
        ), m AS (
            SELECT *, max(e) OVER (PARTITION BY hour, node_id, kind ORDER BY s
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pm
            FROM raw
        ), g AS (
            SELECT *, count(*) FILTER (WHERE pm IS NULL OR s > pm)
                          OVER (PARTITION BY hour, node_id, kind ORDER BY s
                                ROWS UNBOUNDED PRECEDING) AS grp
            FROM m
        )
        SELECT hour, node_id, kind, min(pool_id) AS pool_id, min(s) AS s, max(e) AS e
        FROM g GROUP BY hour, node_id, kind, grp
        """,
        params,
    )
    cur.execute("ANALYZE _ch_isl")
    cur.execute(
        f"""
        CREATE TEMP TABLE _ch_up ON COMMIT DROP AS
        SELECT hour, pool_id, kind, {_us_sum("s", "e")} AS up_us
        FROM _ch_isl GROUP BY hour, pool_id, kind
        """
    )
    # Busy per (hour, node) in one sort of the pieces (and a second over the pieces of the
    # (hour, node)s that are up part of the hour only): each piece's part not covered by the
    # pieces that start before it, [p, e) with p = greatest(s, the latest end before it). The
    # parts are disjoint and their union is the runs' union, so its length is the sum of the
    # parts' and busy (the union ∩ the uptime islands, all kinds merged) is the sum of the parts'
    # overlaps with the islands: no islands of runs (a second window, a grouping) needed.
    cur.execute(
        f"""
        CREATE TEMP TABLE _ch_node ON COMMIT DROP AS
        WITH um AS (
            SELECT hour, node_id, s, e, {_PREV_END} AS pm
            FROM _ch_isl
        ), ug AS (
            SELECT *, count(*) FILTER (WHERE pm IS NULL OR s > pm)
                          OVER (PARTITION BY hour, node_id ORDER BY s
                                ROWS UNBOUNDED PRECEDING) AS grp
            FROM um
        ), ui AS (
            SELECT hour, node_id, min(s) AS s, max(e) AS e FROM ug GROUP BY hour, node_id, grp
        ), whole AS (  -- up the whole hour: busy = the runs' union, no overlaps to compute
            -- (a flag per (hour, node), not the whole-hour islands alone: the planner cannot
            -- estimate `s = hour AND e = …`, guessed one row and, joined as the inner side of
            -- a nested loop, scanned every island once per run: 43 s for 3,000 runs over a
            -- year of uptime, bench/year.py)
            SELECT hour, node_id,
                   bool_or(s = hour AND e = hour + interval '1 hour') AS up_whole_hour
            FROM ui GROUP BY hour, node_id
        ), part AS (  -- the islands of the other (hour, node)s (islands are disjoint)
            SELECT * FROM ui WHERE NOT (s = hour AND e = hour + interval '1 hour')
        ), inside AS (  -- (the window again, over the pieces of those (hour, node)s only)
            SELECT rp.hour, rp.node_id,
                   {_us_sum("greatest(rp.p, ui.s)", "least(rp.e, ui.e)")} AS us
            FROM (
                SELECT hour, node_id, e, greatest(s, {_PREV_END}) AS p
                FROM _ch_runs r
                WHERE e > s AND EXISTS (SELECT 1 FROM part
                                        WHERE part.hour = r.hour AND part.node_id = r.node_id)
            ) rp
            JOIN part ui ON ui.hour = rp.hour AND ui.node_id = rp.node_id
                         AND ui.s < rp.e AND ui.e > rp.p
            WHERE rp.e > rp.p
            GROUP BY rp.hour, rp.node_id
        ), runs AS (  -- (grouped as the window leaves the pieces sorted: no hash table)
            SELECT hour, node_id, {_us_sum("p", "e", "e > p")} AS us,
                   max(f) AS f
            FROM (SELECT hour, node_id, e, f, greatest(s, {_PREV_END}) AS p
                  FROM _ch_runs WHERE e > s) rp
            GROUP BY hour, node_id
        )
        -- (a run of no length is no busy time, and never ends after a period that holds
        -- its hour: max_finish leaves it out)
        SELECT runs.hour, runs.node_id, nd.pool_id,
               (CASE WHEN w.up_whole_hour THEN runs.us ELSE coalesce(inside.us, 0) END)::bigint
                   AS busy_us,
               runs.us::bigint AS runs_us, runs.f AS max_finish
        FROM runs
        JOIN {node_t} nd ON nd.id = runs.node_id
        LEFT JOIN whole w ON w.hour = runs.hour AND w.node_id = runs.node_id
        LEFT JOIN inside ON inside.hour = runs.hour AND inside.node_id = runs.node_id
        """
    )
    weight = _us_sum("s", "e", "status = 'succeeded'")
    cur.execute(
        f"""
        CREATE TEMP TABLE _ch_model ON COMMIT DROP AS
        SELECT hour, pool_id, model_slug,
               coalesce({weight}, 0) AS weight_us,
               (count(*) FILTER (WHERE status = 'succeeded' AND c))::int AS n_succeeded,
               (count(*) FILTER (WHERE status = 'failed' AND c))::int AS n_failed,
               (count(*) FILTER (WHERE status = 'cancelled' AND c))::int AS n_cancelled
        FROM (SELECT *, f < hour + interval '1 hour' AS c FROM _ch_runs) x
        GROUP BY hour, pool_id, model_slug
        """
    )


def _drop(cur) -> None:
    for t in _TEMP:
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{t}")


def refresh() -> int:
    """Recompute the stored aggregates of every dirty hour (set-based) and clear the marks.
    Frozen hours (a detached month's) keep their aggregates: their marks are only cleared.
    Joins the caller's transaction (an import's); returns the number of hours recomputed."""
    dirty_t = CostHourDirty._meta.db_table
    tables = (
        (CostHourUptime._meta.db_table, "_ch_up", "hour, pool_id, kind, up_us"),
        (
            CostHourNode._meta.db_table,
            "_ch_node",
            "hour, node_id, pool_id, busy_us, runs_us, max_finish",
        ),
        (
            CostHourModel._meta.db_table,
            "_ch_model",
            "hour, pool_id, model_slug, weight_us, n_succeeded, n_failed, n_cancelled",
        ),
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("SET LOCAL jit = off")
        cur.execute("SET LOCAL TimeZone = 'UTC'")  # date_trunc('hour', …) cuts UTC hours
        _drop(cur)
        cur.execute("CREATE TEMP TABLE _ch_h (hour timestamptz PRIMARY KEY) ON COMMIT DROP")
        cur.execute(
            f"WITH d AS (DELETE FROM {dirty_t} RETURNING hour) INSERT INTO _ch_h "
            f"SELECT hour FROM d WHERE {_NOT_FROZEN.format(h='d.hour')}"
        )
        n = cur.rowcount
        if n:
            cur.execute("ANALYZE _ch_h")
            _compute(cur, cutoff=None)
            for table, temp, cols in tables:
                cur.execute(f"DELETE FROM {table} t USING _ch_h h WHERE t.hour = h.hour")
                cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp}")
        _drop(cur)
    return n


def _rate_lookup(pool_ids: set[int], bounds: list[datetime]):
    versions: dict[int, list[tuple]] = defaultdict(list)
    for row in (
        PoolRate.objects.filter(pool_id__in=pool_ids)
        .order_by("pool_id", "effective_from")
        .values_list(
            "pool_id",
            "effective_from",
            "hourly_rate_usd",
            "spot_hourly_rate_usd",
            "warm_hourly_rate_usd",
        )
    ):
        versions[row[0]].append(row[1:])
    froms = {p: [v[0] for v in vs] for p, vs in versions.items()}

    def rate(pool_id: int, i: int, kind: str) -> Decimal | None:
        k = bisect.bisect_right(froms.get(pool_id, []), bounds[i]) - 1
        if k < 0:
            return kind_rate(kind, None, None, None)
        _, hourly, spot, warm = versions[pool_id][k]
        return kind_rate(kind, hourly, spot, warm)

    return rate


def raw_from_hours(inp: Inputs) -> Raw:
    """The engine's `Raw` of an `eligible` period from the hours: stored ones where clean,
    recomputed ones (dirty, or overlapped by a run finishing after the period) on the fly,
    except frozen hours (a detached month's), which are always read as stored."""
    p0, p1, b = inp.period.start_at, inp.period.end_at, inp.bounds
    dirty_t = CostHourDirty._meta.db_table
    up_t, node_t, model_t = (
        CostHourUptime._meta.db_table,
        CostHourNode._meta.db_table,
        CostHourModel._meta.db_table,
    )
    raw = Raw()
    own = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cur:
        if own:  # first statement: every later one reads the same data
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        params = {
            "p0": p0,
            "p1": p1,
            "b": b,
            "tail": p1 - HOUR - timedelta(microseconds=_span_us(cur)),
        }
        cur.execute("SET LOCAL jit = off")
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("SET LOCAL TimeZone = 'UTC'")  # date_trunc('hour', …) cuts UTC hours
        _drop(cur)
        cur.execute(
            f"""
            CREATE TEMP TABLE _ch_h ON COMMIT DROP AS
            SELECT hour FROM (
                SELECT hour FROM {dirty_t} WHERE hour >= %(p0)s AND hour < %(p1)s
                UNION
                SELECT hour FROM {node_t}
                WHERE hour >= greatest(%(p0)s, %(tail)s) AND hour < %(p1)s
                  AND max_finish >= %(p1)s
            ) h
            WHERE {_NOT_FROZEN.format(h="h.hour")}
            """,
            params,
        )
        cur.execute("ALTER TABLE _ch_h ADD PRIMARY KEY (hour)")
        _compute(cur, cutoff=p1)

        def both(stored: str, temp: str, cols: str) -> str:
            return f"""
                SELECT {cols} FROM {stored} t
                WHERE t.hour >= %(p0)s AND t.hour < %(p1)s
                  AND NOT EXISTS (SELECT 1 FROM _ch_h h WHERE h.hour = t.hour)
                UNION ALL SELECT {cols} FROM {temp} t
            """

        slice_of = "width_bucket(x.hour, %(b)s::timestamptz[])"
        cur.execute(
            f"""
            SELECT x.pool_id, {slice_of}, x.kind, sum(x.up_us)
            FROM ({both(up_t, "_ch_up", "t.hour, t.pool_id, t.kind, t.up_us")}) x
            GROUP BY 1, 2, 3 HAVING sum(x.up_us) > 0
            """,
            params,
        )
        up_pw = {(p, i - 1, kind): Decimal(us) / MICRO for p, i, kind, us in cur.fetchall()}
        cur.execute(
            f"""
            SELECT x.model_slug, x.pool_id, {slice_of}, sum(x.weight_us)
            FROM ({both(model_t, "_ch_model", "t.hour, t.pool_id, t.model_slug, t.weight_us")}) x
            GROUP BY 1, 2, 3 HAVING sum(x.weight_us) > 0
            """,
            params,
        )
        weight = {(m, p, i - 1): Decimal(us) / MICRO for m, p, i, us in cur.fetchall()}
        cols = "t.hour, t.pool_id, t.model_slug, t.n_succeeded, t.n_failed, t.n_cancelled"
        cur.execute(
            f"""
            SELECT x.model_slug, x.pool_id, sum(x.n_succeeded), sum(x.n_failed),
                   sum(x.n_cancelled)
            FROM ({both(model_t, "_ch_model", cols)}) x
            GROUP BY 1, 2
            HAVING sum(x.n_succeeded) + sum(x.n_failed) + sum(x.n_cancelled) > 0
            """,
            params,
        )
        for model, pool_id, *ns in cur.fetchall():
            counts = raw.counts.setdefault(model, {})
            for status, n in zip(TERMINAL_RUN_STATUSES, ns, strict=True):
                counts[status] = counts.get(status, 0) + int(n)
            raw.pools.setdefault(pool_id, RawPool()).jobs += sum(int(n) for n in ns)
        cols = "t.hour, t.node_id, t.busy_us, t.runs_us"
        cur.execute(
            f"""
            SELECT nd.id, nd.pool_id, x.busy_us, x.runs_us
            FROM (SELECT x.node_id, sum(x.busy_us) AS busy_us, sum(x.runs_us) AS runs_us
                  FROM ({both(node_t, "_ch_node", cols)}) x GROUP BY 1) x
            JOIN {Node._meta.db_table} nd ON nd.id = x.node_id  -- its pool now, as the engine
            ORDER BY 1
            """,
            params,
        )
        for node_id, pool_id, busy_us, runs_us in cur.fetchall():
            inside, runs = Decimal(busy_us) / MICRO, Decimal(runs_us) / MICRO
            if inside:
                raw.pools.setdefault(pool_id, RawPool()).busy_s += inside
            if runs - inside > 0:
                raw.outside.append((pool_id, node_id, runs - inside))
        _drop(cur)
    pool_ids = {p for p, _, _ in up_pw} | {p for _, p, _ in weight}
    allocate(raw, inp, up_pw, weight, _rate_lookup(pool_ids, b))
    return raw
