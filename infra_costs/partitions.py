"""Monthly partitions of the GPU runs (`infra_costs_gpurun`, migration 0007; issue 16).

The runs are partitioned by the UTC month of `started_at`: `infra_costs_gpurun_pYYYY_MM`, and
`infra_costs_gpurun_default` for a start in no such month (so no insert ever fails). A month's
partition is made by the database function `infra_costs_gpurun_month_ensure(ts)` (migration
0007): built beside the table, filled with that month's rows moved out of the default
partition, attached. It is serialised by an advisory lock and is a no-op when the month exists.

- `gpu_run_partitions_ahead`: this month and the next ones (the beat task
  `refresh_cost_aggregates` calls it, so live runs land in month partitions);
- `gpu_run_partitions_for_import`: the months of an import's staged rows, before its insert;
- `gpu_run_month_detach`: a closed month out of the table (kept as a plain table, or dropped).
  `DETACH PARTITION … CONCURRENTLY` is not possible here: PostgreSQL refuses it when the table
  has a default partition, and it cannot run in a transaction block anyway. The plain DETACH
  takes an ACCESS EXCLUSIVE lock on the runs for a catalog change (no scan): it is run with a
  `lock_timeout`, so it gives up rather than queue live writes behind a long report.

Reports of a detached month stay right as long as its hours' aggregates are not recomputed
(docs/performance.md "A year of history"): the detach refuses a month with dirty hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection, transaction

from config.errors import NotFound, ValidationError
from infra_costs.models import CostHourDirty, GpuRun

RUN_TABLE = GpuRun._meta.db_table
DEFAULT_PARTITION = f"{RUN_TABLE}_default"
AHEAD_MONTHS = 2
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


def gpu_run_partitions_for_import(*, first: datetime | None, last: datetime | None) -> int:
    """Before an import's insert: the months from the staged rows' first start to their last
    get their partitions. Inside the import's transaction."""
    if first is None or last is None:
        return 0
    lo_m, hi_m = month_start(first.astimezone(UTC)), month_start(last.astimezone(UTC))
    if (hi_m.year - lo_m.year) * 12 + hi_m.month - lo_m.month >= MAX_IMPORT_MONTHS:
        lo_m = month_start(datetime(hi_m.year - MAX_IMPORT_MONTHS // 12, hi_m.month, 1))
    return gpu_run_months_ensure(first=lo_m, last=hi_m)


def gpu_run_month_detach(
    *, month: date, drop: bool = False, lock_timeout_ms: int = 5000
) -> RunPartition:
    """Detach a closed month's partition (kept as the plain table of the same name, or dropped
    with `drop`). Refused while hours of that month are dirty: refresh the aggregates first."""
    name = partition_name(month)
    part = next((p for p in gpu_run_partitions() if p.name == name), None)
    if part is None:
        raise NotFound(f"No partition {name} is attached.")
    lo = month_start(month)
    hi = month_start(date(lo.year + lo.month // 12, lo.month % 12 + 1, 1))
    with transaction.atomic():
        if CostHourDirty.objects.filter(hour__gte=lo, hour__lt=hi).exists():
            raise ValidationError(
                f"Hours of {lo:%Y-%m} are dirty: refresh the cost aggregates before detaching.",
            )
        with connection.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
            cur.execute(f'ALTER TABLE {RUN_TABLE} DETACH PARTITION "{name}"')
            if drop:  # (the deferred FK checks of rows written in this transaction first)
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cur.execute(f'DROP TABLE "{name}"')
    return part
