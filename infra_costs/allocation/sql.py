"""Data access of the unit-cost report: the exact per-slice aggregates (uptime, weights, busy
time, job counts) computed set-based by PostgreSQL — temp tables, window functions and
`width_bucket` over the slice boundaries; no loop over jobs."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection, transaction

from infra_costs.allocation.method import Raw, RawPool, allocate, exact_seconds, kind_rate
from infra_costs.allocation.windows import Inputs
from infra_costs.models import (
    TERMINAL_RUN_STATUSES,
    GpuRun,
    Node,
    PoolRate,
    RateKind,
    UptimeInterval,
)

UNGROUPED = "-"  # the group of runs not in a `group_table`
_TEMP = ("_uc_slices", "_uc_rates", "_uc_up", "_uc_up_sl", "_uc_g", "_uc_jw")
_NO_RATE = (None, None, None)


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


GROUP_TABLE_RE = re.compile(r"^_[a-z][a-z0-9_]{0,40}$")


def raw_aggregates(inp: Inputs, *, group_table: str | None = None) -> Raw:
    """The engine. Steps (temp tables, dropped at the end):

    `group_table`: the name of a temp table `(external_id text, grp text)` of the caller's
    transaction: runs are then grouped by `grp` instead of by model (runs not in it by
    `UNGROUPED`) — the same allocation per group of runs (see `allocation.grouped`).

    1. slices (windows cut at rate changes) and the rates of each pool in each slice (hourly,
       spot and warm: the version in force);
    2. uptime islands per (node, rate kind) (overlaps of one node of one kind merged) and
       uptime per (pool, slice, kind), which the cost is made of; the busy pass gets the
       islands merged again per node over all kinds (a job runs in whatever uptime there is);
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
        "terminal": list(TERMINAL_RUN_STATUSES),
        "pn": [iv.node_id for iv in inp.planned],
        "pp": [iv.pool_id for iv in inp.planned],
        "ps": [iv.started_at for iv in inp.planned],
        "pe": [iv.ended_at for iv in inp.planned],
    }
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
        # 1. The rates in force in each slice of each pool (none before its first rate).
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_rates ON COMMIT DROP AS
            WITH r AS (
                SELECT pool_id, hourly_rate_usd AS rate, spot_hourly_rate_usd AS spot,
                       warm_hourly_rate_usd AS warm, effective_from AS f,
                       lead(effective_from) OVER (PARTITION BY pool_id ORDER BY effective_from) AS t
                FROM {rate_t}
            )
            SELECT r.pool_id, sl.i, r.rate, r.spot, r.warm
            FROM r JOIN _uc_slices sl ON sl.s >= r.f AND (r.t IS NULL OR sl.s < r.t)
            WHERE r.f < %(p1)s AND (r.t IS NULL OR r.t > %(p0)s)
            """,
            params,
        )
        # 2. Uptime islands per (node, rate kind): measured intervals (and planned ones of
        # schedule pools, on demand), clipped to the period, overlaps merged (gaps and islands
        # over a running maximum).
        cur.execute(
            f"""
            CREATE TEMP TABLE _uc_up ON COMMIT DROP AS
            WITH raw AS (
                SELECT u.node_id, u.pool_id, u.rate_kind AS kind,
                       greatest(u.started_at, %(p0)s) AS s, least(u.ended_at, %(p1)s) AS e
                FROM {up_t} u WHERE u.started_at < %(p1)s AND u.ended_at > %(p0)s
                UNION ALL
                SELECT node_id, pool_id, %(planned_kind)s, s, e
                FROM unnest(%(pn)s::bigint[], %(pp)s::bigint[], %(ps)s::timestamptz[],
                            %(pe)s::timestamptz[]) AS t(node_id, pool_id, s, e)
            ), m AS (
                SELECT node_id, pool_id, kind, s, e,
                       max(e) OVER (PARTITION BY node_id, kind ORDER BY s
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pm
                FROM raw
            ), g AS (
                SELECT node_id, pool_id, kind, s, e,
                       count(*) FILTER (WHERE pm IS NULL OR s > pm)
                           OVER (PARTITION BY node_id, kind ORDER BY s
                                 ROWS UNBOUNDED PRECEDING) AS grp
                FROM m
            )
            SELECT node_id, kind, min(pool_id) AS pool_id, min(s) AS s, max(e) AS e
            FROM g GROUP BY node_id, kind, grp
            """,
            {**params, "planned_kind": RateKind.ON_DEMAND.value},
        )
        cur.execute(
            """
            CREATE TEMP TABLE _uc_up_sl ON COMMIT DROP AS
            SELECT u.pool_id, gs.i, u.kind,
                   sum(least(u.e, (%(b)s::timestamptz[])[gs.i + 1])
                       - greatest(u.s, (%(b)s::timestamptz[])[gs.i])) AS d
            FROM _uc_up u
            CROSS JOIN LATERAL generate_series(width_bucket(u.s, %(b)s::timestamptz[]),
                                               width_bucket(u.e, %(b)s::timestamptz[])) gs(i)
            GROUP BY u.pool_id, gs.i, u.kind
            """,
            params,
        )
        # 4. Busy per node — started first so that it overlaps with the weights. Its islands:
        # the (node, kind) ones merged again per node, over all kinds.
        cur.execute(
            """
            SELECT node_id, min(s), max(e)
            FROM (
                SELECT node_id, s, e,
                       count(*) FILTER (WHERE pm IS NULL OR s > pm)
                           OVER (PARTITION BY node_id ORDER BY s ROWS UNBOUNDED PRECEDING) AS grp
                FROM (
                    SELECT node_id, s, e,
                           max(e) OVER (PARTITION BY node_id ORDER BY s
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS pm
                    FROM _uc_up
                ) m
            ) g
            GROUP BY node_id, grp
            ORDER BY node_id, 2
            """
        )
        islands = cur.fetchall()
        busy_sql = _busy_sql()
        busy_params = {
            "p0": p0,
            "p1": p1,
            "terminal": list(TERMINAL_RUN_STATUSES),
            "un": [i[0] for i in islands],
            "us": [i[1] for i in islands],
            "ue": [i[2] for i in islands],
        }
        if snapshot is not None:
            pool = ThreadPoolExecutor(max_workers=1)
            helper = pool.submit(
                _helper_busy, connection.get_connection_params(), snapshot, busy_sql, busy_params
            )
            pool.shutdown(wait=False)
        # 3. The weights: runs of the period by model (or group), pool, (first, last) slice.
        group_key, group_join = "r.model_slug", ""
        if group_table is not None:
            if not GROUP_TABLE_RE.match(group_table):
                raise ValueError("group_table must be a plain temp table name")
            group_key = f"coalesce(gt.grp, '{UNGROUPED}')"
            group_join = f"LEFT JOIN pg_temp.{group_table} gt ON gt.external_id = r.external_id"
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
                SELECT {group_key} AS model, r.pool_id, r.status,
                       greatest(r.started_at, %(p0)s) AS s, r.finished_at AS e,
                       width_bucket(greatest(r.started_at, %(p0)s), %(b)s::timestamptz[]) AS i_s,
                       width_bucket(r.finished_at, %(b)s::timestamptz[]) AS i_e
                FROM {run_t} r {group_join}
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
            inside, runs = exact_seconds(busy), exact_seconds(new_parts)
            if inside:
                raw.pools.setdefault(pool_id, RawPool()).busy_s += inside
            if runs - inside > 0:
                raw.outside.append((pool_id, node_id, runs - inside))
        # 5. Exact per-slice aggregates; cost and allocation in `method.allocate`.
        cur.execute("SELECT pool_id, i, rate, spot, warm FROM _uc_rates")
        rates = {(pool_id, i - 1): tuple(r) for pool_id, i, *r in cur.fetchall()}
        cur.execute("SELECT pool_id, i, kind, extract(epoch FROM d) FROM _uc_up_sl WHERE d > '0'")
        up_pw = {
            (pool_id, i - 1, kind): exact_seconds(secs) for pool_id, i, kind, secs in cur.fetchall()
        }
        cur.execute("SELECT model, pool_id, i, extract(epoch FROM d) FROM _uc_jw WHERE d > '0'")
        weight = {
            (m, pool_id, i - 1): exact_seconds(secs) for m, pool_id, i, secs in cur.fetchall()
        }
        cur.execute(
            "SELECT model, pool_id, sum(n), sum(n_failed), sum(n_cancelled) FROM _uc_g "
            "GROUP BY model, pool_id"
        )
        for model, pool_id, *ns in cur.fetchall():
            counts = raw.counts.setdefault(model, {})
            for status, n in zip(TERMINAL_RUN_STATUSES, ns, strict=True):
                counts[status] = counts.get(status, 0) + int(n)
            raw.pools.setdefault(pool_id, RawPool()).jobs += sum(int(n) for n in ns)
        for t in _TEMP:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{t}")
    allocate(
        raw,
        inp,
        up_pw,
        weight,
        lambda pool_id, i, kind: kind_rate(kind, *rates.get((pool_id, i), _NO_RATE)),
    )
    return raw
