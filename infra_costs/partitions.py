"""Monthly partitions of the GPU runs (`infra_costs_gpurun`, migration 0007; issue 16).

The runs are partitioned by the UTC month of `started_at`: `infra_costs_gpurun_pYYYY_MM`, and
`infra_costs_gpurun_default` for a start in no such month (so no insert ever fails). A month's
partition is made by the database function `infra_costs_gpurun_month_ensure(ts)` (migration
0007): built beside the table, filled with that month's rows moved out of the default
partition, attached. It is serialised by an advisory lock and is a no-op when the month exists.

- `gpu_run_partitions_ahead`: this month and the next ones (the beat task
  `refresh_cost_aggregates` calls it, so live runs land in month partitions);
- `gpu_run_import_months`, `gpu_run_months_missing`, `gpu_run_months_load`: an import's months
  (`infra_costs.imports.jobs`); a month without partition is built from its rows in bulk and
  attached (indexes built once, the foreign key checked set-based), the others take the insert;
- `gpu_run_month_detach`: a closed month out of the table (kept as a plain table, or dropped).
  `DETACH PARTITION … CONCURRENTLY` is not possible here: PostgreSQL refuses it when the table
  has a default partition, and it cannot run in a transaction block anyway. The plain DETACH
  takes an ACCESS EXCLUSIVE lock on the runs for a catalog change (no scan): it is run with a
  `lock_timeout`, so it gives up rather than queue live writes behind a long report.
- `gpu_run_month_attach`: a month detached without `drop` back into the table.

A detached month is recorded (`DetachedRunMonth`, in the detach's transaction) and the hours
its runs touch are frozen, from the first run's start to the last one's finish (into the next
month for runs still going at midnight). Their aggregates are never recomputed
(`infra_costs.allocation.hourly` skips them), as the detached runs are no longer there to
recompute them from; so its reports keep the figures of the detach (docs/performance.md
"A year of history"). The detach refuses a month with dirty hours; the attach marks the frozen
ones dirty, so they are recomputed with the runs again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from config.errors import NotFound, ValidationError
from infra_costs.models import CostHourDirty, DetachedRunMonth, GpuRun, Node, NodePool

RUN_TABLE = GpuRun._meta.db_table
DEFAULT_PARTITION = f"{RUN_TABLE}_default"
AHEAD_MONTHS = 2
HOUR = timedelta(hours=1)
MAX_IMPORT_MONTHS = 240  # an import spanning more leaves the rest in the default partition
_NAME = re.compile(rf"^{RUN_TABLE}_p(\d{{4}})_(\d{{2}})$")


@dataclass(frozen=True, slots=True)
class RunPartition:
    name: str
    month: date | None  # None: the default partition
    bounds: str


def month_start(value: date | datetime) -> datetime:
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def partition_name(month: date | datetime) -> str:
    return f"{RUN_TABLE}_p{month.year:04d}_{month.month:02d}"


def gpu_run_partitions() -> list[RunPartition]:
    """The attached partitions, oldest month first, the default partition last."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = %s::regclass
            ORDER BY c.relname
            """,
            [RUN_TABLE],
        )
        rows = cur.fetchall()
    out = []
    for name, bounds in rows:
        m = _NAME.match(name)
        out.append(
            RunPartition(
                name=name, month=date(int(m[1]), int(m[2]), 1) if m else None, bounds=bounds
            )
        )
    return sorted(out, key=lambda p: (p.month is None, p.month or date.min))


def gpu_run_months_ensure(*, first: date | datetime, last: date | datetime) -> int:
    """The month partitions of [first's month, last's month], made when missing (with the rows
    of those months moved out of the default partition); returns how many were made."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT count(*) FILTER (WHERE {RUN_TABLE}_month_ensure(m AT TIME ZONE 'UTC'))
            FROM generate_series(%(first)s::timestamp, %(last)s::timestamp,
                                 interval '1 month') m
            """,
            {
                "first": month_start(first).replace(tzinfo=None),
                "last": month_start(last).replace(tzinfo=None),
            },
        )
        return cur.fetchone()[0]


def gpu_run_partitions_ahead(*, now: datetime, months: int = AHEAD_MONTHS) -> int:
    """This month's partition and the next `months` ones."""
    start = month_start(now)
    y, m = divmod(start.month - 1 + months, 12)
    return gpu_run_months_ensure(first=start, last=date(start.year + y, m + 1, 1))


def next_month(month: datetime) -> datetime:
    return month_start(date(month.year + month.month // 12, month.month % 12 + 1, 1))


def gpu_run_import_months(*, first: datetime, last: datetime) -> list[datetime]:
    """The months (UTC month starts) in which an import of runs started in [first, last] may
    make partitions: from first's month to last's, at most MAX_IMPORT_MONTHS before the latest
    (the rows of older months, and of December 9999, stay in the default partition)."""
    hi = month_start(min(last.astimezone(UTC), datetime(9999, 11, 1, tzinfo=UTC)))
    lo = max(
        month_start(first.astimezone(UTC)),
        month_start(datetime(max(1, hi.year - MAX_IMPORT_MONTHS // 12), hi.month, 1)),
    )
    if lo > hi:
        return []
    months = [lo]
    while months[-1] < hi:
        months.append(next_month(months[-1]))
    return months


def _month_lock(cur) -> None:
    """The lock `infra_costs_gpurun_month_ensure` takes (migration 0007): one session at a time
    makes months, and holds the lock to the end of its transaction."""
    cur.execute(f"SELECT pg_advisory_xact_lock(hashtext('{RUN_TABLE}_month_ensure'))")


def gpu_run_months_lock() -> None:
    """The months' lock, before a read of the runs that is not limited to attached months (it
    reads the default partition): see `gpu_run_import_lock`."""
    with connection.cursor() as cur:
        _month_lock(cur)


def gpu_run_import_lock(*, first: datetime, last: datetime) -> bool:
    """Before an import reads the runs of [first, last]: when some month of it has no attached
    partition (the import may make it, and reading it reads the default partition), the months'
    lock is taken, to the end of the transaction. Two imports making the same months are then
    serialised before they read the default partition, which the one attaching locks: without
    it the other's read (held) and its id claim (waiting for the first) deadlock. Returns
    whether it was taken."""
    months = gpu_run_import_months(first=first, last=last)
    whole = bool(months) and (months[0], months[-1]) == (
        month_start(first.astimezone(UTC)),
        month_start(last.astimezone(UTC)),
    )
    attached = {p.month for p in gpu_run_partitions() if p.month}
    missing = not whole or any(m.date() not in attached for m in months)
    if missing:
        with connection.cursor() as cur:
            _month_lock(cur)
    return missing


def gpu_run_months_missing(*, months: list[datetime]) -> list[datetime]:
    """Of these months (UTC month starts), those without a partition. When some are missing,
    the months' lock is taken first (to the end of the transaction), so no other session makes
    them meanwhile: the caller builds them (`gpu_run_months_load`)."""
    if not months:
        return []
    names = [partition_name(m) for m in months]
    query = "SELECT n FROM unnest(%s::text[]) n WHERE to_regclass(quote_ident(n)) IS NULL"
    with connection.cursor() as cur:
        cur.execute(query, [names])
        if not cur.fetchall():
            return []
        _month_lock(cur)
        cur.execute(query, [names])
        missing = {n for (n,) in cur.fetchall()}
    return [m for m, n in zip(months, names, strict=True) if n in missing]


def gpu_run_months_load(
    *, months: list[datetime], load: Callable[[str, str, datetime, datetime], int]
) -> int:
    """Missing months' partitions built from their rows in bulk, then attached; returns the
    rows loaded. For each month `load(table, id_sql, lo, hi)` fills the new plain table with
    the runs started in [lo, hi) (ids: the SQL expression `id_sql`, the next value of the runs'
    identity sequence) and returns its number of rows; the table's
    indexes are then built in one pass each (not maintained row by row). Then, for all the
    months at once, the rows that live runs left in the default partition meanwhile are moved
    in and the tables are attached: ATTACH adopts the indexes and checks the foreign key in one
    set-based query (not one deferred check per row at COMMIT). Inside the caller's
    transaction, after `gpu_run_months_missing` said the months are missing (its lock is held).
    The runs' insert triggers do not fire: `load` marks the new rows' hours dirty itself.

    The attach locks, to the end of the transaction (as `gpu_run_months_ensure` does): ACCESS
    EXCLUSIVE on the default partition, SHARE ROW EXCLUSIVE on the nodes (the foreign key's
    check blocks their updates); so they are taken after every month is built."""
    n = 0
    if not months:
        return n
    with connection.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [RUN_TABLE])
        # (resolved once: pg_get_serial_sequence per row cost ~8 µs)
        id_sql = "nextval('" + cur.fetchone()[0].replace("'", "''") + "'::regclass)"
        ddl = None
        for month in months:
            name = partition_name(month)
            cur.execute(f'CREATE TABLE "{name}" (LIKE {RUN_TABLE} INCLUDING CONSTRAINTS)')
            n += load(name, id_sql, month, next_month(month))
            for sql in ddl or (ddl := _index_ddl(cur)):
                cur.execute(sql.replace("{name}", name))
        cur.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        for month in months:
            _month_attach(cur, partition_name(month), lo=month, hi=next_month(month))
    return n


def _month_attach(cur, name: str, *, lo: datetime, hi: datetime) -> int:
    """Attach table `name` as the month [lo, hi), with the runs of that month written to the
    default partition meanwhile moved into it first; returns how many moved. The caller holds
    the default partition in ACCESS EXCLUSIVE mode (no run of the month lands there after the
    move)."""
    bounds = {"lo": lo, "hi": hi}
    cur.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE started_at >= %(lo)s "
        f'AND started_at < %(hi)s RETURNING *) INSERT INTO "{name}" SELECT * FROM moved',
        bounds,
    )
    moved = cur.rowcount
    # The range as a CHECK first: ATTACH then need not scan the table for it.
    cur.execute(
        f'ALTER TABLE "{name}" ADD CONSTRAINT "{name}_range" '
        "CHECK (started_at >= %(lo)s AND started_at < %(hi)s)",
        bounds,
    )
    cur.execute(
        f'ALTER TABLE {RUN_TABLE} ATTACH PARTITION "{name}" FOR VALUES FROM (%(lo)s) TO (%(hi)s)',
        bounds,
    )
    cur.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_range"')
    return moved


_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON ONLY \S+ (USING .*)$")


def _index_ddl(cur) -> list[str]:
    """The runs' indexes and unique keys, as statements (`{name}`: the table) building them on
    a plain table, which ATTACH then adopts as the partition's (instead of building its own)."""
    cur.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid), k.contype,
               pg_get_constraintdef(k.oid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
        WHERE i.indrelid = %s::regclass ORDER BY c.relname
        """,
        [RUN_TABLE],
    )
    out = []
    for index, definition, contype, condef in cur.fetchall():
        if contype in ("p", "u"):
            suffix = "pkey" if contype == "p" else index
            out.append(f'ALTER TABLE "{{name}}" ADD CONSTRAINT "{{name}}_{suffix}" ' + condef)
            continue
        m = _INDEX_DEF.match(definition)
        if m is not None:  # (otherwise ATTACH builds it)
            out.append(f'CREATE {m[1] or ""}INDEX "{{name}}_{index}" ON "{{name}}" ' + m[2])
    return out


def _frozen_hours(cur, table: str) -> tuple[datetime, datetime] | None:
    """The hours a month's runs touch, [first, end): from the hour of the earliest start to the
    end of the hour of the latest finish (the hours a run touches include its finish's:
    migration 0006), so past the month's end for runs still going at midnight. None when the
    table has no runs. One index probe of (node, started_at) per node and of (pool,
    finished_at) per pool."""
    cur.execute(
        f"SELECT (SELECT min(x.s) FROM {Node._meta.db_table} n CROSS JOIN LATERAL "
        f'(SELECT min(r.started_at) AS s FROM "{table}" r WHERE r.node_id = n.id) x), '
        f"(SELECT max(x.f) FROM {NodePool._meta.db_table} p CROSS JOIN LATERAL "
        f'(SELECT max(r.finished_at) AS f FROM "{table}" r WHERE r.pool_id = p.id) x)'
    )
    first, last = cur.fetchone()
    if first is None:
        return None
    last = max(last or first, first)  # (only running runs: their start's hour)

    def hour(t: datetime) -> datetime:
        return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    return hour(first), hour(last) + HOUR


def _refuse_dirty(lo: datetime, hi: datetime, frozen: tuple[datetime, datetime] | None) -> None:
    """The month's hours, and those its runs reach in the next month, must be clean."""
    until = max(hi, frozen[1]) if frozen else hi
    if CostHourDirty.objects.filter(hour__gte=lo, hour__lt=until).exists():
        raise ValidationError(
            f"Hours of {lo:%Y-%m} are dirty: refresh the cost aggregates before detaching.",
        )


def gpu_run_month_detach(
    *, month: date, drop: bool = False, lock_timeout_ms: int = 5000
) -> RunPartition:
    """Detach a closed month's partition (kept as the plain table of the same name, or dropped
    with `drop`) and record it (`DetachedRunMonth`): its hours are frozen from then on. Refused
    while hours of that month (or of the next one, that its runs reach) are dirty: refresh the
    aggregates first."""
    name = partition_name(month)
    part = next((p for p in gpu_run_partitions() if p.name == name), None)
    if part is None:
        raise NotFound(f"No partition {name} is attached.")
    lo = month_start(month)
    hi = next_month(lo)
    with transaction.atomic(), connection.cursor() as cur:
        _refuse_dirty(lo, hi, _frozen_hours(cur, name))  # (before the lock: refused cheaply)
        cur.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        cur.execute(f'ALTER TABLE {RUN_TABLE} DETACH PARTITION "{name}"')
        # Again under the lock, which waited for every writer of the runs: the last word.
        frozen = _frozen_hours(cur, name)
        _refuse_dirty(lo, hi, frozen)
        prior = DetachedRunMonth.objects.select_for_update().filter(month=lo.date()).first()
        if prior is not None and prior.frozen_until > prior.frozen_from:
            # (detached and dropped before, then made again by an import: the hours of the
            # dropped runs stay frozen too)
            frozen = (
                (min(frozen[0], prior.frozen_from), max(frozen[1], prior.frozen_until))
                if frozen
                else (prior.frozen_from, prior.frozen_until)
            )
        DetachedRunMonth.objects.update_or_create(
            month=lo.date(),
            defaults={
                "table_name": name,
                # (dropped before: those runs are gone, the month can never be attached whole)
                "dropped": drop or (prior is not None and prior.dropped),
                "detached_at": timezone.now(),
                # No runs: nothing to freeze (an empty range), recomputing loses nothing.
                "frozen_from": frozen[0] if frozen else lo,
                "frozen_until": frozen[1] if frozen else lo,
            },
        )
        if drop:  # (the deferred FK checks of rows written in this transaction first)
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute(f'DROP TABLE "{name}"')
    return part


@dataclass(frozen=True, slots=True)
class MonthAttached:
    name: str
    rows: int  # the runs of the month, now attached
    moved: int  # of which written while it was detached (moved from the default partition)
    hours: int  # the hours marked dirty (recomputed by the next refresh)


def gpu_run_month_attach(*, month: date, lock_timeout_ms: int = 5000) -> MonthAttached:
    """Attach a month detached without `drop` again: its table back as the month's partition,
    with the runs of that month written meanwhile (in the default partition) moved into it;
    its record deleted and every hour it froze marked dirty, so the next refresh (or a report,
    on the fly) recomputes them with the runs. Refused, writing nothing, when the month is not
    detached, its table was dropped, or the table holds runs started outside the month."""
    lo = month_start(month)
    hi = next_month(lo)
    with transaction.atomic(), connection.cursor() as cur:
        record = DetachedRunMonth.objects.select_for_update().filter(month=lo.date()).first()
        if record is None:
            raise NotFound(f"{lo:%Y-%m} is not detached.")
        name = record.table_name
        if record.dropped:
            raise ValidationError(
                f"{name} was dropped when {lo:%Y-%m} was detached: there is nothing to attach "
                "(its hours keep the figures of the detach)."
            )
        cur.execute("SELECT to_regclass(quote_ident(%s))", [name])
        if cur.fetchone()[0] is None:
            raise ValidationError(f"{name} no longer exists: there is nothing to attach.")
        bounds = {"lo": lo, "hi": hi}
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT (started_at >= %(lo)s "
            f'AND started_at < %(hi)s)) FROM "{name}"',
            bounds,
        )
        rows, outside = cur.fetchone()
        if outside:
            raise ValidationError(
                f"{name} holds {outside} run{'s' if outside != 1 else ''} started outside "
                f"{lo:%Y-%m}: move or delete them, then attach again.",
            )
        cur.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        # (ALTER TABLE refuses a table with pending deferred FK checks: rows written to it in
        # this transaction, the moved ones included, are checked as they are written)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        moved = _month_attach(cur, name, lo=lo, hi=hi)
        # The hours it froze, and those its runs touch now (the table may have been edited).
        spans = [(record.frozen_from, record.frozen_until), _frozen_hours(cur, name) or (lo, lo)]
        spans = [(a, b) for a, b in spans if b > a]
        record.delete()
        hours = 0
        if spans:
            first, until = min(a for a, _ in spans), max(b for _, b in spans)
            cur.execute(
                f"INSERT INTO {CostHourDirty._meta.db_table} (hour) SELECT generate_series("
                "%s::timestamptz, %s::timestamptz - interval '1 hour', interval '1 hour') "
                "ON CONFLICT DO NOTHING",
                [first, until],
            )
            hours = int((until - first) / HOUR)
    return MonthAttached(name=name, rows=rows + moved, moved=moved, hours=hours)
