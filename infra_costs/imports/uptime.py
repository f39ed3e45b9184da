"""Node uptime: the checked rows COPYed into a temporary table, set-based checks against
the database, one insert (unknown nodes are created in the row's pool). Inside the caller's
transaction."""

from __future__ import annotations

from django.db import connection

from infra_costs.imports.checks import add_errors, check_uptime, checked, finish
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows
from infra_costs.models import (
    CapacityType,
    Node,
    NodeHealth,
    NodePool,
    NodeState,
    RateKind,
    UptimeInterval,
    UptimeSource,
)
from infra_costs.progress import Progress

UPTIME_COLUMNS = ("node", "pool", "started_at", "ended_at")
_UPTIME_TMP = "_infra_import_uptime"


def copy_uptime(
    rows: NumberedRows,
    result: ImportResult,
    *,
    skip_invalid: bool,
    progress: Progress | None,
) -> None:
    node_t, pool_t, up_t = (
        Node._meta.db_table,
        NodePool._meta.db_table,
        UptimeInterval._meta.db_table,
    )
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_UPTIME_TMP}")
        cur.execute(
            f"CREATE TEMP TABLE {_UPTIME_TMP} (line bigint, node text, pool text, "
            "started_at timestamptz, ended_at timestamptz) ON COMMIT DROP"
        )
        with cur.copy(
            f"COPY {_UPTIME_TMP} (line, node, pool, started_at, ended_at) FROM STDIN"
        ) as copy:
            for row in checked(rows, check_uptime, result):
                copy.write_row(row)
        if progress:
            progress.message("checking against the database…")
        cur.execute(f"ANALYZE {_UPTIME_TMP}")
        # Unknown pools.
        cur.execute(
            f"SELECT t.line, t.pool FROM {_UPTIME_TMP} t LEFT JOIN {pool_t} p ON p.slug = t.pool "
            "WHERE p.id IS NULL"
        )
        add_errors(result, ((line, f"unknown pool {pool!r}") for line, pool in cur.fetchall()))
        # A known node named with another pool.
        cur.execute(
            f"SELECT t.line, t.node, p.slug FROM {_UPTIME_TMP} t "
            f"JOIN {node_t} n ON n.name = t.node JOIN {pool_t} p ON p.id = n.pool_id "
            "WHERE p.slug <> t.pool"
        )
        add_errors(
            result,
            (
                (line, f"node {node!r} belongs to pool {pool!r}")
                for line, node, pool in cur.fetchall()
            ),
        )
        # A new node named with two pools in the input.
        cur.execute(
            f"""
            SELECT line, node, first_pool, first_line FROM (
                SELECT t.line, t.node, t.pool,
                       first_value(t.pool) OVER w AS first_pool,
                       first_value(t.line) OVER w AS first_line
                FROM {_UPTIME_TMP} t
                WHERE NOT EXISTS (SELECT 1 FROM {node_t} n WHERE n.name = t.node)
                WINDOW w AS (PARTITION BY t.node ORDER BY t.line)
            ) x WHERE pool <> first_pool
            """
        )
        add_errors(
            result,
            (
                (line, f"node {node!r} is in pool {pool!r} at {result.key_name} {first}")
                for line, node, pool, first in cur.fetchall()
            ),
        )
        # The same interval twice in the input.
        cur.execute(
            f"""
            SELECT line, first_line FROM (
                SELECT line, min(line) OVER (PARTITION BY node, started_at, ended_at) AS first_line
                FROM {_UPTIME_TMP}
            ) x WHERE line <> first_line
            """
        )
        add_errors(
            result,
            (
                (line, f"duplicate interval (first at {result.key_name} {first})")
                for line, first in cur.fetchall()
            ),
        )
        finish(result, skip_invalid)
        if result.errors:
            cur.execute(f"DELETE FROM {_UPTIME_TMP} WHERE line = ANY(%s)", [list(result.errors)])
        cur.execute(f"SELECT count(*) FROM {_UPTIME_TMP}")
        accepted = cur.fetchone()[0]
        cur.execute(
            f"""
            INSERT INTO {node_t} (name, pool_id, provider, provider_ref, capacity_type,
                                  is_primary, state, transition, health, slots, billing_kind,
                                  created_at)
            SELECT DISTINCT ON (t.node) t.node, p.id, '', '', %(on_demand)s, false, %(cold)s,
                   '', %(ok)s, 1, '', now()
            FROM {_UPTIME_TMP} t JOIN {pool_t} p ON p.slug = t.pool
            WHERE NOT EXISTS (SELECT 1 FROM {node_t} n WHERE n.name = t.node)
            ORDER BY t.node, t.line
            ON CONFLICT (name) DO NOTHING
            """,
            {
                "on_demand": CapacityType.ON_DEMAND.value,
                "cold": NodeState.COLD.value,
                "ok": NodeHealth.OK.value,
            },
        )
        new_nodes = cur.rowcount
        cur.execute(
            f"""
            INSERT INTO {up_t} (node_id, pool_id, started_at, ended_at, source, rate_kind,
                                created_at)
            SELECT n.id, n.pool_id, t.started_at, t.ended_at, %s, %s, now()
            FROM {_UPTIME_TMP} t JOIN {node_t} n ON n.name = t.node
            ON CONFLICT (node_id, started_at, ended_at) DO NOTHING
            """,
            [UptimeSource.IMPORTED, RateKind.ON_DEMAND.value],
        )
        result.imported = cur.rowcount
        result.already_present = accepted - result.imported
        result.created = {"nodes": new_nodes}
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_UPTIME_TMP}")
