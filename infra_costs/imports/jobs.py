"""GPU runs (source `imported`): the checked rows COPYed into a temporary table, set-based
checks against the database, one insert. Inside the caller's transaction."""

from __future__ import annotations

from django.db import connection

from infra_costs.imports.checks import add_errors, check_job, checked, finish
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows
from infra_costs.models import GpuRun, Node, RunSource
from infra_costs.progress import Progress

JOB_COLUMNS = ("external_id", "model", "node", "started_at", "finished_at", "status")
_JOBS_TMP = "_infra_import_jobs"


def copy_jobs(
    rows: NumberedRows,
    result: ImportResult,
    *,
    skip_invalid: bool,
    progress: Progress | None,
) -> None:
    node_t, run_t = Node._meta.db_table, GpuRun._meta.db_table
    with connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")
        cur.execute(
            f"CREATE TEMP TABLE {_JOBS_TMP} (line bigint, external_id text, model text, "
            "node text, started_at timestamptz, finished_at timestamptz, status text, "
            "present boolean NOT NULL DEFAULT false) ON COMMIT DROP"
        )
        with cur.copy(
            f"COPY {_JOBS_TMP} (line, external_id, model, node, started_at, finished_at, status) "
            "FROM STDIN"
        ) as copy:
            write = copy.write_row
            for row in checked(rows, check_job, result):
                write(row)
        if progress:
            progress.message("checking against the database…")
        cur.execute(f"ANALYZE {_JOBS_TMP}")
        cur.execute(
            f"SELECT t.line, t.node FROM {_JOBS_TMP} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM {node_t} n WHERE n.name = t.node)"
        )
        add_errors(
            result,
            (
                (line, f"unknown node {node!r} (import its uptime first)")
                for line, node in cur.fetchall()
            ),
        )
        cur.execute(
            f"""
            WITH d AS (
                SELECT external_id FROM {_JOBS_TMP} GROUP BY external_id HAVING count(*) > 1
            )
            SELECT line, first_line FROM (
                SELECT t.line, min(t.line) OVER (PARTITION BY t.external_id) AS first_line
                FROM {_JOBS_TMP} t JOIN d USING (external_id)
            ) x WHERE line <> first_line
            """
        )
        add_errors(
            result,
            (
                (line, f"duplicate external_id (first at {result.key_name} {first})")
                for line, first in cur.fetchall()
            ),
        )
        # Rows already imported are marked (and later left out of the insert: a re-import
        # writes nothing); those with different data are errors.
        cur.execute(
            f"""
            WITH hit AS (
                UPDATE {_JOBS_TMP} t SET present = true
                FROM {run_t} r JOIN {node_t} n ON n.id = r.node_id
                WHERE r.external_id = t.external_id
                RETURNING t.line, r.model_slug, n.name, r.started_at, r.finished_at, r.status,
                          (r.model_slug, n.name, r.started_at, r.finished_at, r.status)
                          IS DISTINCT FROM (t.model, t.node, t.started_at, t.finished_at,
                                            t.status) AS differs
            )
            SELECT line, model_slug, name, started_at, finished_at, status FROM hit
            WHERE differs
            """
        )
        add_errors(
            result,
            (
                (line, "external_id already imported with different data " + _run_desc(*rest))
                for line, *rest in cur.fetchall()
            ),
        )
        finish(result, skip_invalid)
        if result.errors:
            cur.execute(f"DELETE FROM {_JOBS_TMP} WHERE line = ANY(%s)", [list(result.errors)])
        if progress:
            progress.message("inserting…")
        cur.execute(f"SELECT count(*) FROM {_JOBS_TMP}")
        accepted = cur.fetchone()[0]
        cur.execute(
            f"""
            INSERT INTO {run_t} (external_id, model_slug, pool_id, node_id, started_at,
                                 finished_at, status, source, created_at)
            SELECT t.external_id, t.model, n.pool_id, n.id, t.started_at, t.finished_at,
                   t.status, %s, now()
            FROM {_JOBS_TMP} t JOIN {node_t} n ON n.name = t.node
            WHERE NOT t.present
            ORDER BY n.id, t.finished_at  -- index locality: ~25 %% faster on 1M rows
            ON CONFLICT (external_id) DO NOTHING
            """,
            [RunSource.IMPORTED],
        )
        result.imported = cur.rowcount
        result.already_present = accepted - result.imported
        cur.execute(f"SELECT DISTINCT model FROM {_JOBS_TMP}")
        result.model_slugs = {slug for (slug,) in cur.fetchall()}
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")


def _run_desc(model, node, started, finished, status) -> str:
    return (
        f"(existing: {model} on {node}, {started.isoformat()} → "
        f"{finished.isoformat() if finished else 'running'}, {status})"
    )
