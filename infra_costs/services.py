"""Writes of infra_costs — every state change of the app goes through here:

* imports of pools (rate versions), node uptime and GPU runs, from API rows or CSV files
  (`pools_import`, `uptime_import`, `jobs_import` and their `_csv` twins; the parts are in
  `infra_costs.imports`). Each import is one durable transaction: all-or-nothing unless
  `skip_invalid`, idempotent;
* new versions of a pool's hourly rate (`pool_rate_add`), with who and why, and an audit row;
* live GPU runs, recorded for every job attempt by the generations app (`gpu_run_start`,
  `gpu_run_finish`), so live generations and imported history are one table for cost
  allocation. These run inside the caller's transaction.

Reads are in `infra_costs.selectors` (and the report packages `allocation` and `capacity`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from django.db import connection, transaction
from django.utils import timezone

from accounts.services import audit_record
from config.errors import ValidationError
from infra_costs.allocation import hourly
from infra_costs.imports.jobs import JOB_COLUMNS, copy_jobs
from infra_costs.imports.pools import POOL_COLUMNS, write_pools
from infra_costs.imports.results import ImportResult
from infra_costs.imports.rows import NumberedRows, csv_rows, file_rows, json_rows
from infra_costs.imports.uptime import UPTIME_COLUMNS, copy_uptime
from infra_costs.models import (
    TERMINAL_RUN_STATUSES,
    GpuRun,
    GpuRunKey,
    Node,
    NodePool,
    PoolRate,
    RunSource,
    RunStatus,
)
from infra_costs.progress import Progress
from infra_costs.signals import runs_imported

# --- Imports ------------------------------------------------------------------------------------


def pools_import(*, rows: Iterable[Mapping[str, Any]], skip_invalid: bool = False) -> ImportResult:
    """Pools and rate versions from API rows (keys: row index)."""
    return _pools_import(json_rows(rows, POOL_COLUMNS), ImportResult("pools", "row"), skip_invalid)


def pools_import_csv(
    *, stream: TextIO, skip_invalid: bool = False, progress: Progress | None = None
) -> ImportResult:
    """Pools and rate versions from a CSV file (keys: line numbers). Pool files are small: no
    progress line (`progress` is accepted so that every CSV import is called alike)."""
    return _pools_import(csv_rows(stream, POOL_COLUMNS), ImportResult("pools"), skip_invalid)


def _pools_import(rows: NumberedRows, result: ImportResult, skip_invalid: bool) -> ImportResult:
    with transaction.atomic(durable=True):
        write_pools(rows, result, skip_invalid=skip_invalid)
    return result


def uptime_import(*, rows: Iterable[Mapping[str, Any]], skip_invalid: bool = False) -> ImportResult:
    """Uptime intervals from API rows (keys: row index)."""
    return _uptime_import(
        json_rows(rows, UPTIME_COLUMNS), ImportResult("uptime", "row"), skip_invalid, None
    )


def uptime_import_csv(
    *, stream: TextIO, skip_invalid: bool = False, progress: Progress | None = None
) -> ImportResult:
    """Uptime intervals from a CSV file (keys: line numbers)."""
    return _uptime_import(
        file_rows(stream, UPTIME_COLUMNS, progress), ImportResult("uptime"), skip_invalid, progress
    )


def _uptime_import(
    rows: NumberedRows, result: ImportResult, skip_invalid: bool, progress: Progress | None
) -> ImportResult:
    with transaction.atomic(durable=True):
        copy_uptime(rows, result, skip_invalid=skip_invalid, progress=progress)
        hourly.refresh()
    return result


def jobs_import(*, rows: Iterable[Mapping[str, Any]], skip_invalid: bool = False) -> ImportResult:
    """GPU runs (source `imported`) from API rows (keys: row index)."""
    return _jobs_import(
        json_rows(rows, JOB_COLUMNS), ImportResult("jobs", "row"), skip_invalid, None
    )


def jobs_import_csv(
    *, stream: TextIO, skip_invalid: bool = False, progress: Progress | None = None
) -> ImportResult:
    """GPU runs (source `imported`) from a CSV file (keys: line numbers)."""
    return _jobs_import(
        file_rows(stream, JOB_COLUMNS, progress), ImportResult("jobs"), skip_invalid, progress
    )


def _jobs_import(
    rows: NumberedRows, result: ImportResult, skip_invalid: bool, progress: Progress | None
) -> ImportResult:
    with transaction.atomic(durable=True):
        copy_jobs(rows, result, skip_invalid=skip_invalid, progress=progress)
        # The unit-cost report's per-hour aggregates of the hours the import touched.
        hourly.refresh()
        if result.model_slugs:
            # generations creates the models it does not know yet, in this transaction.
            runs_imported.send(sender=GpuRun, model_slugs=set(result.model_slugs))
    return result


CsvImport = Callable[..., ImportResult]

CSV_IMPORTS: dict[str, CsvImport] = {
    "pools": pools_import_csv,
    "uptime": uptime_import_csv,
    "jobs": jobs_import_csv,
}


def cost_aggregates_refresh() -> int:
    """Recompute the unit-cost report's per-hour aggregates of the hours marked dirty since
    (live runs, uptime recorded by the fleet, admin edits); returns how many. Reports are exact
    without it (they recompute dirty hours on the fly); it keeps them fast."""
    with transaction.atomic(durable=True):
        return hourly.refresh()


# --- Live GPU runs ------------------------------------------------------------------------------


RUN_TABLE = GpuRun._meta.db_table
NODE_TABLE = Node._meta.db_table
KEY_TABLE = GpuRunKey._meta.db_table


def _node_ensure(*, pool: NodePool, name: str) -> Node:
    node, _ = Node.objects.get_or_create(name=name, defaults={"pool": pool})
    if node.pool_id != pool.pk:
        raise ValueError(f"Node {name!r} belongs to pool {node.pool.slug!r}, not {pool.slug!r}.")
    return node


def gpu_run_start(
    *, external_id: str, model_slug: str, pool: NodePool, node_name: str, started_at: datetime
) -> GpuRun:
    """A job attempt started on a node. Idempotent per external_id.

    One statement when the node is known (every run after a node's first): the external id is
    claimed in `GpuRunKey` (`ON CONFLICT DO NOTHING`: a replay, or a concurrent delivery of the
    same job, waits for the first and claims nothing) and the run is inserted with its node
    looked up by name, in the same statement. The runs are partitioned by month, so the key
    table, not the runs, carries the uniqueness of external_id (migration 0007). A new node, a
    node of another pool or a replay inserts nothing there and takes the general path below."""
    created_at = timezone.now()
    params = {
        "external_id": external_id,
        "model_slug": model_slug,
        "started_at": started_at,
        "status": RunStatus.RUNNING.value,
        "source": RunSource.LIVE.value,
        "created_at": created_at,
        "node": node_name,
        "pool": pool.pk,
    }
    with connection.cursor() as cur:
        cur.execute(_RUN_START_SQL, params)
        run_id, node_id, node_known = cur.fetchone()
        if run_id is None and not node_known:
            _node_ensure(pool=pool, name=node_name)  # a new node (or refused: another pool's)
            cur.execute(_RUN_START_SQL, params)
            run_id, node_id, node_known = cur.fetchone()
    if run_id is None:  # a replay: the run of the first delivery
        first = GpuRun.objects.filter(external_id=external_id).first()
        if first is None:  # its id is taken by a run the table no longer holds
            raise ValidationError(
                f"GPU run {external_id!r} was already recorded, in a month since detached "
                "from the runs (infra_costs.partitions): it is not recorded again."
            )
        return first
    run = GpuRun(
        id=run_id,
        external_id=external_id,
        model_slug=model_slug,
        pool=pool,
        node_id=node_id,
        started_at=started_at,
        status=RunStatus.RUNNING,
        source=RunSource.LIVE,
        created_at=created_at,
    )
    run._state.adding = False
    run._state.db = "default"
    return run


_RUN_START_SQL = f"""
    WITH n AS (
        SELECT id, pool_id FROM {NODE_TABLE} WHERE name = %(node)s AND pool_id = %(pool)s
    ), k AS (
        INSERT INTO {KEY_TABLE} (external_id) SELECT %(external_id)s FROM n
        ON CONFLICT (external_id) DO NOTHING
        RETURNING external_id
    ), r AS (
        INSERT INTO {RUN_TABLE} (external_id, model_slug, pool_id, node_id, started_at,
                                 finished_at, status, source, created_at)
        SELECT k.external_id, %(model_slug)s, n.pool_id, n.id, %(started_at)s,
               NULL, %(status)s, %(source)s, %(created_at)s
        FROM k CROSS JOIN n
        RETURNING id, node_id
    )
    SELECT r.id, r.node_id, EXISTS (SELECT 1 FROM n) FROM (SELECT 1) one LEFT JOIN r ON true
"""


def gpu_run_finish(
    *,
    external_id: str,
    status: str,
    finished_at: datetime,
    started_at: datetime | None = None,
    correct_lost: bool = False,
    recorded_start: datetime | None = None,
) -> int:
    """The attempt ended (succeeded, failed or cancelled). Only a running run changes, so a
    replay changes nothing. `started_at` corrects the start when the backend knows it better.
    `correct_lost`: a run closed as failed when its worker was taken for lost is corrected too
    (the worker's result, kept while the database was away, is recorded late).

    `recorded_start`: the run's start as it was recorded (the attempt's start, which the job
    keeps). The runs are partitioned by start month, so with it the statement is planned for
    that one month, not for every month and its `external_id` index (on 39 months: 1.6 ms of
    planning → 0.07 ms). A hint that finds no row (a replay, or a start corrected since) falls
    back to the statement over all months, so a wrong hint costs a statement, never a result."""
    if status not in TERMINAL_RUN_STATUSES:
        raise ValueError(status)
    # What `GpuRun.objects.filter(external_id=…, status__in=which).update(…)` runs, as a fixed
    # statement: it ends every job, and compiling it cost more than running it (issue 16).
    sets, params = "status = %s, finished_at = %s", [str(status), finished_at]
    if started_at is not None:
        sets += ", started_at = %s"
        params.append(min(started_at, finished_at))
    which = "(%s, %s)" if correct_lost else "(%s)"
    params += [external_id, RunStatus.RUNNING.value]
    if correct_lost:
        params.append(RunStatus.FAILED.value)
    table = connection.ops.quote_name(GpuRun._meta.db_table)
    sql = f"UPDATE {table} SET {sets} WHERE external_id = %s AND status IN {which}"
    with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
        if recorded_start is not None:
            cursor.execute(sql + " AND started_at = %s", [*params, recorded_start])
            if cursor.rowcount:
                return cursor.rowcount
        cursor.execute(sql, params)
        return cursor.rowcount


# --- Pool rates ---------------------------------------------------------------------------------


@transaction.atomic  # joins the admin's own transaction (the pool form is saved with it)
def pool_rate_add(
    *,
    pool: NodePool,
    hourly_rate_usd: Decimal,
    effective_from: datetime,
    actor: Any,
    reason: str = "",
    warm_hourly_rate_usd: Decimal | None = None,
    spot_hourly_rate_usd: Decimal | None = None,
) -> PoolRate:
    """A new version of the pool's hourly rate per node from `effective_from` on, with its
    optional warm (stopped, leased) and spot rates. Versions are never edited: a correction is
    another version."""
    rate = PoolRate.objects.create(
        pool=pool,
        hourly_rate_usd=hourly_rate_usd,
        warm_hourly_rate_usd=warm_hourly_rate_usd,
        spot_hourly_rate_usd=spot_hourly_rate_usd,
        effective_from=effective_from,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        reason=reason,
    )
    audit_record(
        action="infra_costs.pool_rate_added",
        actor=actor,
        target=rate,
        data={
            "pool": pool.slug,
            "hourly_rate_usd": str(hourly_rate_usd),
            "warm_hourly_rate_usd": None
            if warm_hourly_rate_usd is None
            else str(warm_hourly_rate_usd),
            "spot_hourly_rate_usd": None
            if spot_hourly_rate_usd is None
            else str(spot_hourly_rate_usd),
            "effective_from": effective_from.isoformat(),
            "reason": reason,
        },
    )
    return rate
