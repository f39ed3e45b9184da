"""GPU runs (source `imported`): the checked rows COPYed into a temporary table, set-based
checks against the database, one insert. Inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, connection, transaction

from infra_costs import partitions
from infra_costs.imports.checks import add_errors, checked_jobs, finish
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows
from infra_costs.models import GpuRun, GpuRunKey, Node, RunSource
from infra_costs.progress import Progress

JOB_COLUMNS = ("external_id", "model", "node", "started_at", "finished_at", "status")
_JOBS_TMP = "_infra_import_jobs"
_JOBS_TMP_TYPES = ("int8", "text", "text", "text", "timestamptz", "timestamptz", "text")
_RUN_COLUMNS = (
    "external_id, model_slug, pool_id, node_id, started_at, finished_at, status, source, created_at"
)
# The runs' insert trigger (`infra_costs_run_dirty`, RUN_MARK of migration 0006), for rows
# written into a month's table before it is attached (the trigger does not fire there): their
# hours marked dirty, the bound of run lengths raised. Run with the session in UTC (then
# `date_trunc('hour', t)` is the trigger's `date_trunc('hour', t, 'UTC')`, a third faster).
_RUN_MARK = """
    WITH r AS (
        SELECT started_at, finished_at FROM {rows}
        WHERE finished_at IS NOT NULL AND status <> 'running'
    ), d AS (
        INSERT INTO infra_costs_costhourdirty (hour)
        SELECT DISTINCT gs.h FROM r
        CROSS JOIN LATERAL generate_series(date_trunc('hour', r.started_at),
                                           r.finished_at, interval '1 hour') AS gs(h)
        ON CONFLICT DO NOTHING
    )
    UPDATE infra_costs_costrunspan s SET max_us = x.us
    FROM (SELECT (extract(epoch FROM max(finished_at - started_at)) * 1000000)::bigint
                 AS us FROM r) x
    WHERE s.id = 1 AND x.us > s.max_us"""


def copy_jobs(
    rows: NumberedRows,
    result: ImportResult,
    *,
    skip_invalid: bool,
    progress: Progress | None,
) -> None:
    node_t, run_t = Node._meta.db_table, GpuRun._meta.db_table
    key_t = GpuRunKey._meta.db_table
    with connection.cursor() as cur:
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("SET LOCAL jit = off")  # (1M-row statements: compiling costs, gains nothing)
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")
        cur.execute(
            f"CREATE TEMP TABLE {_JOBS_TMP} (line bigint, external_id text, model text, "
            "node text, started_at timestamptz, finished_at timestamptz, status text, "
            "present boolean NOT NULL DEFAULT false) ON COMMIT DROP"
        )
        # Binary COPY: the checked datetimes go over as instants (no text formatting in Python,
        # no timestamp parsing in PostgreSQL): ~5 s less CPU per 1M rows than text COPY.
        with cur.copy(
            f"COPY {_JOBS_TMP} (line, external_id, model, node, started_at, finished_at, status) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_JOBS_TMP_TYPES)
            write = copy.write_row
            for row in checked_jobs(rows, result):
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
        # writes nothing); those with different data are errors. The runs are partitioned by
        # month of their start: the comparison reads only the months of the staged rows (15.4 s
        # → 3.4 s for one month's 850k rows against 10M runs, docs/performance.md); the ids
        # taken whose run is not there (another start, or a detached month) are found by the
        # key table, then looked up by id.
        cur.execute(f"SELECT min(started_at), max(started_at) FROM {_JOBS_TMP}")
        first, last = cur.fetchone()
        if first is not None:  # (before reading the runs: see the function)
            partitions.gpu_run_import_lock(first=first, last=last)
        cur.execute(
            f"""
            WITH hit AS (
                UPDATE {_JOBS_TMP} t SET present = true
                FROM {run_t} r JOIN {node_t} n ON n.id = r.node_id
                WHERE r.external_id = t.external_id
                  AND r.started_at >= %(first)s AND r.started_at <= %(last)s
                RETURNING t.line, r.model_slug, n.name, r.started_at, r.finished_at, r.status,
                          (r.model_slug, n.name, r.started_at, r.finished_at, r.status)
                          IS DISTINCT FROM (t.model, t.node, t.started_at, t.finished_at,
                                            t.status) AS differs
            )
            SELECT line, model_slug, name, started_at, finished_at, status FROM hit
            WHERE differs
            """,
            {"first": first, "last": last},
        )
        differ = cur.fetchall()
        cur.execute(
            f"UPDATE {_JOBS_TMP} t SET present = true FROM {key_t} k "
            'WHERE k.external_id = t.external_id COLLATE "C" AND NOT t.present '
            "RETURNING t.external_id, t.line"
        )
        elsewhere = dict(cur.fetchall())
        if elsewhere:  # (a run of another month: its start differs, so its data does)
            partitions.gpu_run_months_lock()  # (the lookup reads every month and the default)
            cur.execute(
                f"SELECT r.external_id, r.model_slug, n.name, r.started_at, r.finished_at, "
                f"r.status FROM {run_t} r JOIN {node_t} n ON n.id = r.node_id "
                "WHERE r.external_id = ANY(%s)",
                [list(elsewhere)],
            )
            differ += [(elsewhere[ext], *rest) for ext, *rest in cur.fetchall()]
        add_errors(
            result,
            (
                (line, "external_id already imported with different data " + _run_desc(*rest))
                for line, *rest in sorted(differ)
            ),
        )
        finish(result, skip_invalid)
        if result.errors:
            cur.execute(f"DELETE FROM {_JOBS_TMP} WHERE line = ANY(%s)", [list(result.errors)])
        if progress:
            progress.message("inserting…")
        cur.execute(f"SELECT count(*) FROM {_JOBS_TMP}")
        accepted = cur.fetchone()[0]
        # external_id is unique through the key table (the runs are partitioned by month,
        # migration 0007): the ids are claimed first, in key order (the key index grows at its
        # right edge), by a plain INSERT, which took 13.4 s against 25.6 s with ON CONFLICT on
        # 2M ids (busy machine, docs/performance.md); a conflict raises and undoes the savepoint.
        claim = (
            f"INSERT INTO {key_t} (external_id) SELECT external_id FROM {_JOBS_TMP} "
            'WHERE NOT present ORDER BY external_id COLLATE "C"'
        )
        try:
            with transaction.atomic():  # savepoint: undone when some id is taken
                cur.execute(claim)
        except IntegrityError:
            # Ids taken by runs this import cannot see (a concurrent import that committed
            # meanwhile, a detached month): the rows whose id this statement does not claim
            # are left out, as already present.
            cur.execute(
                f"WITH k AS ({claim} ON CONFLICT (external_id) DO NOTHING "
                f"RETURNING external_id) UPDATE {_JOBS_TMP} t SET present = true "
                "WHERE NOT t.present AND NOT EXISTS "
                '(SELECT 1 FROM k WHERE k.external_id = t.external_id COLLATE "C")'
            )
        # The rows to insert by month of start (bucket i: months[i - 1]; 0: older months).
        months = partitions.gpu_run_import_months(first=first, last=last) if first else []
        bounds = [*months, partitions.next_month(months[-1])] if months else []
        cur.execute(
            f"SELECT width_bucket(started_at, %s::timestamptz[]), count(*) FROM {_JOBS_TMP} "
            "WHERE NOT present GROUP BY 1",
            [bounds],
        )
        counts = dict(cur.fetchall())
        # A month without its partition yet (history imported into a database that has not
        # seen it) is loaded into a table of its own and attached: its indexes built once, its
        # foreign key checked in one query, instead of both row by row (docs/performance.md,
        # "Imports, issue 16: the insert and the FK checks"). The others take the insert.
        fresh = partitions.gpu_run_months_missing(
            months=[months[b - 1] for b in sorted(counts) if 0 < b <= len(months)]
        )
        imported = 0
        if len(fresh) < len(counts):
            cur.execute(
                f"""
                INSERT INTO {run_t} ({_RUN_COLUMNS})
                SELECT t.external_id, t.model, n.pool_id, n.id, t.started_at, t.finished_at,
                       t.status, %(source)s, now()
                FROM {_JOBS_TMP} t JOIN {node_t} n ON n.name = t.node
                WHERE NOT t.present
                  AND width_bucket(t.started_at, %(bounds)s::timestamptz[]) <> ALL(%(fresh)s)
                ORDER BY n.id, t.finished_at  -- index locality: ~25 %% faster on 1M rows
                """,
                {
                    "source": RunSource.IMPORTED,
                    "bounds": bounds,
                    "fresh": [months.index(m) + 1 for m in fresh],
                },
            )
            imported += cur.rowcount

        def load(table: str, id_sql: str, lo: datetime, hi: datetime) -> int:
            # In node order: the month's heap is then laid out by node, as the reads of the
            # runs go (per node, in time). It costs the load a sort (~0.5 s a month of 333k
            # runs) and pays later: on 10M runs the full recomputation over the year took
            # 11.3 s against 36.9 s loaded in file order, the aggregates 48.8 s against 58.0 s
            # (docs/performance.md, "The year bench again").
            cur.execute(
                f"""
                INSERT INTO "{table}" (id, {_RUN_COLUMNS})
                SELECT {id_sql}, t.external_id, t.model, n.pool_id, n.id, t.started_at,
                       t.finished_at, t.status, %(source)s, now()
                FROM {_JOBS_TMP} t JOIN {node_t} n ON n.name = t.node
                WHERE NOT t.present AND t.started_at >= %(lo)s AND t.started_at < %(hi)s
                ORDER BY n.id, t.finished_at
                """,
                {"source": RunSource.IMPORTED, "lo": lo, "hi": hi},
            )
            n = cur.rowcount
            cur.execute("SET LOCAL TimeZone = 'UTC'")  # (as hourly.refresh, next, does too)
            cur.execute(_RUN_MARK.format(rows=f'"{table}"'))  # what the insert trigger does
            return n

        imported += partitions.gpu_run_months_load(months=fresh, load=load)
        result.imported = imported
        result.already_present = accepted - result.imported
        cur.execute(f"SELECT DISTINCT model FROM {_JOBS_TMP}")
        result.model_slugs = {slug for (slug,) in cur.fetchall()}
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")


def _run_desc(model, node, started, finished, status) -> str:
    return (
        f"(existing: {model} on {node}, {started.isoformat()} → "
        f"{finished.isoformat() if finished else 'running'}, {status})"
    )
