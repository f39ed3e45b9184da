"""GPU runs (source `imported`): the checked rows COPYed into a temporary table, set-based
checks against the database, one insert. Inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain

from django.db import IntegrityError, connection, transaction

from infra_costs import partitions
from infra_costs.imports.checks import add_errors, checked_jobs, finish
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows
from infra_costs.models import GpuRun, GpuRunKey, Node, RunSource
from infra_costs.progress import Progress

JOB_COLUMNS = ("external_id", "model", "node", "started_at", "finished_at", "status")
_JOBS_TMP = "_infra_import_jobs"
_JOBS_TMP_COLUMNS = "line, m, external_id, model, node, started_at, finished_at, status"
_JOBS_TMP_TYPES = ("int8", "int4", "text", "text", "text", "timestamptz", "timestamptz", "text")
# The staging table is partitioned by the UTC month of the start (`m`: year * 12 + month - 1),
# so a month's load reads its own rows, not the whole file once per month (10M runs over 14
# months: ~20 s of the loads). The rows of months past the first _STAGE_MONTHS share one
# default partition (still correct: a load then reads that partition whole).
_STAGE_MONTHS = 60
_RUN_COLUMNS = (
    "external_id, model_slug, pool_id, node_id, started_at, finished_at, status, source, created_at"
)
# The marks of the runs' insert trigger (`infra_costs_run_dirty`, RUN_MARK of migration 0006),
# for rows written into a month's table before it is attached (the trigger does not fire
# there): their hours marked dirty, the bound of run lengths raised. The same marks, from the
# distinct (start hour, finish hour) pairs rather than one series per run (0.51 → 0.22 s for a
# month of 310k runs). Run with the session in UTC (then `date_trunc('hour', t)` is the
# trigger's `date_trunc('hour', t, 'UTC')`, a third faster).
_RUN_MARK = """
    WITH p AS MATERIALIZED (
        SELECT date_trunc('hour', started_at) AS a, date_trunc('hour', finished_at) AS b,
               max(finished_at - started_at) AS len
        FROM {rows} WHERE finished_at IS NOT NULL AND status <> 'running'
        GROUP BY 1, 2
    ), d AS (
        INSERT INTO infra_costs_costhourdirty (hour)
        SELECT DISTINCT gs.h FROM p
        CROSS JOIN LATERAL generate_series(p.a, p.b, interval '1 hour') AS gs(h)
        ON CONFLICT DO NOTHING
    )
    UPDATE infra_costs_costrunspan s SET max_us = x.us
    FROM (SELECT (extract(epoch FROM max(len)) * 1000000)::bigint AS us FROM p) x
    WHERE s.id = 1 AND x.us > s.max_us"""
# The nodes numbered in id order (`rk`), and the order the runs are written in: by node, then
# by finish (to the second), as one bigint. A single bigint key sorts a month of 345k rows in
# ~0.75 s less than (n.id, t.finished_at): PostgreSQL sorts a leading bigint with a specialised
# comparison, and with two keys nearly every comparison (a node's ~8k runs tie on it) went on to
# the generic one. The epochs of years 1 to 9999 span less than 10^12 s, so the node order is
# kept exactly.
_NODES_RANKED = "(SELECT id, pool_id, name, row_number() OVER (ORDER BY id) AS rk FROM {node_t})"
_NODE_FINISH_ORDER = "n.rk * 1000000000000 + date_part('epoch', t.finished_at)::int8"


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
        staged = _stage(cur, rows, result)
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
            ), marked AS (SELECT count(*) AS n FROM hit)
            SELECT marked.n, d.* FROM marked LEFT JOIN (
                SELECT line, model_slug, name, started_at, finished_at, status FROM hit
                WHERE differs
            ) d ON true
            """,
            {"first": first, "last": last},
        )
        found = cur.fetchall()
        present = found[0][0]
        differ = [tuple(r[1:]) for r in found if r[1] is not None]
        cur.execute(
            f"UPDATE {_JOBS_TMP} t SET present = true FROM {key_t} k "
            'WHERE k.external_id = t.external_id COLLATE "C" AND NOT t.present '
            "RETURNING t.external_id, t.line"
        )
        elsewhere = dict(cur.fetchall())
        present += cur.rowcount
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
        # Ids twice in the file: looked for now when the file is refused anyway (every error
        # is reported) or some rows are already imported (those are not claimed below);
        # otherwise the claim finds them (a key taken twice), and they are looked for only
        # then (0.9 s saved on 1M rows that have none).
        duplicates_sought = bool(result.errors or present)
        if duplicates_sought:
            _duplicates(cur, result)
        finish(result, skip_invalid)
        left_out = _delete_errors(cur, result)
        if progress:
            progress.message("inserting…")
        claimed = _claim(cur, key_t)
        if not claimed and not duplicates_sought and _duplicates(cur, result):
            finish(result, skip_invalid)  # (refused here unless skip_invalid)
            left_out += _delete_errors(cur, result)
            claimed = _claim(cur, key_t)
        if not claimed:
            # Ids taken by runs this import cannot see (a concurrent import that committed
            # meanwhile, a detached month): the rows whose id this statement does not claim
            # are left out, as already present.
            cur.execute(
                f"WITH k AS ({_CLAIM.format(key_t=key_t)} ON CONFLICT (external_id) DO NOTHING "
                f"RETURNING external_id) UPDATE {_JOBS_TMP} t SET present = true "
                "WHERE NOT t.present AND NOT EXISTS "
                '(SELECT 1 FROM k WHERE k.external_id = t.external_id COLLATE "C")'
            )
        accepted = staged.rows - left_out
        # The rows to insert by month of start (bucket i: months[i - 1]; 0: older months;
        # len(months) + 1: December 9999). As staged, unless some rows are now left out.
        months = partitions.gpu_run_import_months(first=first, last=last) if first else []
        bounds = [*months, partitions.next_month(months[-1])] if months else []
        if present or left_out:
            cur.execute(
                f"SELECT width_bucket(started_at, %s::timestamptz[]), count(*) "
                f"FROM {_JOBS_TMP} WHERE NOT present GROUP BY 1",
                [bounds],
            )
            counts = dict(cur.fetchall())
        else:
            counts = _buckets(staged.months, months)
        # A month without its partition yet (history imported into a database that has not
        # seen it) is loaded into a table of its own and attached: its indexes built once, its
        # foreign key checked in one query, instead of both row by row (docs/performance.md,
        # "Imports, issue 16: the insert and the FK checks"). The others take the insert.
        fresh = partitions.gpu_run_months_missing(
            months=[months[b - 1] for b in sorted(counts) if 0 < b <= len(months)]
        )
        nodes = _NODES_RANKED.format(node_t=node_t)
        imported = 0
        if len(fresh) < len(counts):
            cur.execute(
                f"""
                INSERT INTO {run_t} ({_RUN_COLUMNS})
                SELECT t.external_id, t.model, n.pool_id, n.id, t.started_at, t.finished_at,
                       t.status, %(source)s, now()
                FROM {_JOBS_TMP} t JOIN {nodes} n ON n.name = t.node
                WHERE NOT t.present
                  AND width_bucket(t.started_at, %(bounds)s::timestamptz[]) <> ALL(%(fresh)s)
                ORDER BY {_NODE_FINISH_ORDER}  -- index locality: ~25 %% faster on 1M rows
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
            # runs go (per node, in time). It costs the load a sort (~0.3 s a month of 333k
            # runs) and pays later: on 10M runs the full recomputation over the year took
            # 11.3 s against 36.9 s loaded in file order, the aggregates 48.8 s against 58.0 s
            # (docs/performance.md, "The year bench again").
            cur.execute(
                f"""
                INSERT INTO "{table}" (id, {_RUN_COLUMNS})
                SELECT {id_sql}, t.external_id, t.model, n.pool_id, n.id, t.started_at,
                       t.finished_at, t.status, %(source)s, now()
                FROM {_JOBS_TMP} t JOIN {nodes} n ON n.name = t.node
                WHERE t.m = %(m)s AND NOT t.present
                  AND t.started_at >= %(lo)s AND t.started_at < %(hi)s
                ORDER BY {_NODE_FINISH_ORDER}
                """,
                {"source": RunSource.IMPORTED, "lo": lo, "hi": hi, "m": _month_key(lo)},
            )
            n = cur.rowcount
            cur.execute("SET LOCAL TimeZone = 'UTC'")  # (as hourly.refresh, next, does too)
            cur.execute(_RUN_MARK.format(rows=f'"{table}"'))  # what the insert trigger does
            return n

        imported += partitions.gpu_run_months_load(months=fresh, load=load)
        result.imported = imported
        result.already_present = accepted - result.imported
        models = staged.models
        if left_out:  # (some staged rows were errors: the models of those that are left)
            cur.execute(f"SELECT DISTINCT model FROM {_JOBS_TMP}")
            models = {slug for (slug,) in cur.fetchall()}
        result.model_slugs = models
        cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")


@dataclass
class _Staged:
    rows: int = 0
    models: set[str] = field(default_factory=set)  # the models the rows name
    months: dict[int, int] = field(default_factory=dict)  # month key → rows


def _stage(cur, rows: NumberedRows, result: ImportResult) -> _Staged:
    """The rows that pass the field checks COPYed into the staging table (binary COPY: the
    checked datetimes go over as instants, no text formatting in Python, no timestamp parsing
    in PostgreSQL: ~5 s less CPU per 1M rows than text COPY), each month's into a partition of
    its own, made when its first row comes (the COPY is ended, the partition made, a new COPY
    begun: once per month)."""
    cur.execute(f"DROP TABLE IF EXISTS pg_temp.{_JOBS_TMP}")
    cur.execute(
        f"CREATE TEMP TABLE {_JOBS_TMP} (line bigint, m int, external_id text, model text, "
        "node text, started_at timestamptz, finished_at timestamptz, status text, "
        "present boolean NOT NULL DEFAULT false) PARTITION BY LIST (m) ON COMMIT DROP"
    )
    _low_statistics(cur, _JOBS_TMP)
    staged = _Staged()
    add_model, months = staged.models.add, staged.months
    routed: set[int] = set()  # the month keys that have a partition (or go to the default)
    keyed = (
        (line, _month_key(started), external_id, model, node, started, finished, status)
        for line, external_id, model, node, started, finished, status in checked_jobs(rows, result)
    )
    pending = None  # (the first row of a month without its partition: written after it)
    while True:
        with cur.copy(f"COPY {_JOBS_TMP} ({_JOBS_TMP_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_JOBS_TMP_TYPES)
            write = copy.write_row
            source = keyed if pending is None else chain((pending,), keyed)
            pending = None
            for row in source:
                m = row[1]
                if m not in routed:
                    pending = row
                    break
                write(row)
                add_model(row[3])
                months[m] = months.get(m, 0) + 1
        staged.rows += max(cur.rowcount, 0)
        if pending is None:
            return staged
        m = pending[1]
        if len(routed) < _STAGE_MONTHS:
            part = f"FOR VALUES IN ({int(m)})"
            name = f"{_JOBS_TMP}_m{int(m)}"
        elif len(routed) == _STAGE_MONTHS:  # (and never a month's partition after it)
            part, name = "DEFAULT", f"{_JOBS_TMP}_default"
        else:
            part = None
        if part:
            cur.execute(f"CREATE TEMP TABLE {name} PARTITION OF {_JOBS_TMP} {part}")
            _low_statistics(cur, name)
        routed.add(m)


def _low_statistics(cur, table: str) -> None:
    """ANALYZE samples 3,000 rows, not 30,000 (0.21 → 0.02 s on 1M rows): the plans need the
    table's size and that external_id is (nearly) unique, not fine histograms."""
    cur.execute(
        f"ALTER TABLE {table} "
        + ", ".join(
            f"ALTER COLUMN {c} SET STATISTICS 10"
            for c in [*_JOBS_TMP_COLUMNS.split(", "), "present"]
        )
    )


def _month_key(value: datetime) -> int:
    """The UTC month of `value` as year * 12 + month - 1 (instants before year 1 or after 9999
    in UTC: the key of December of year 0, of January 10000)."""
    offset = value.utcoffset()
    if not offset:
        return value.year * 12 + value.month - 1
    try:
        value = value - offset
    except OverflowError:
        return 11 if offset > timedelta(0) else 120_000
    return value.year * 12 + value.month - 1


def _buckets(staged: dict[int, int], months: list[datetime]) -> dict[int, int]:
    """Rows per month key as rows per bucket of `width_bucket(started_at, [*months, next])`."""
    if not months:
        return {0: sum(staged.values())} if staged else {}
    counts: dict[int, int] = {}
    lo, hi = _month_key(months[0]), _month_key(months[-1])
    for m, n in staged.items():
        b = 0 if m < lo else len(months) + 1 if m > hi else m - lo + 1
        counts[b] = counts.get(b, 0) + n
    return counts


# external_id is unique through the key table (the runs are partitioned by month, migration
# 0007): the ids are claimed in key order (the key index grows at its right edge), by a plain
# INSERT, which took 13.4 s against 25.6 s with ON CONFLICT on 2M ids (busy machine,
# docs/performance.md).
_CLAIM = (
    "INSERT INTO {key_t} (external_id) SELECT external_id FROM "
    + _JOBS_TMP
    + ' WHERE NOT present ORDER BY external_id COLLATE "C"'
)


def _claim(cur, key_t: str) -> bool:
    """Claim the ids of the rows to insert; False (nothing claimed: the savepoint is undone)
    when some id is taken, by a run or by another row of the file."""
    try:
        with transaction.atomic():
            cur.execute(_CLAIM.format(key_t=key_t))
    except IntegrityError:
        return False
    return True


def _duplicates(cur, result: ImportResult) -> bool:
    """The rows whose external_id an earlier row of the file has, as errors; True if any."""
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
    found = cur.fetchall()
    add_errors(
        result,
        (
            (line, f"duplicate external_id (first at {result.key_name} {first})")
            for line, first in found
        ),
    )
    return bool(found)


def _delete_errors(cur, result: ImportResult) -> int:
    """Drop the rows with errors from the staging table (skip_invalid); returns how many."""
    if not result.errors:
        return 0
    cur.execute(f"DELETE FROM {_JOBS_TMP} WHERE line = ANY(%s)", [list(result.errors)])
    return cur.rowcount


def _run_desc(model, node, started, finished, status) -> str:
    return (
        f"(existing: {model} on {node}, {started.isoformat()} → "
        f"{finished.isoformat() if finished else 'running'}, {status})"
    )
