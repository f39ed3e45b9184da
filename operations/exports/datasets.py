"""The exports of `operations`: the unit-cost report's tables (models, pools, stages), ledger
entries and usage (jobs per organization, model and day), registered in `config.exports` when
the app loads (`OperationsConfig.ready`). The margins exports are `planning.exports`'.

Each `rows()` checks the period with `infra_costs.periods.make_period` (the reports' own rules
and messages) and computes what can fail before it returns; the large tables (ledger entries,
usage) are then read from a server-side cursor in chunks. The figures are the reports' own:
`infra_costs.allocation.unit_cost_report` (spec §3), the ledger and the jobs tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from config.exports import CREDITS, DAY, DEC, INT, STR, TS, Dataset, ExportQuery, register
from credits.models import LedgerEntry
from generations.models import Job, JobStatus
from infra_costs.allocation import unit_cost_report
from infra_costs.periods import Period, make_period, zone
from infra_costs.report import MODEL_COLUMNS, POOL_COLUMNS, STAGE_COLUMNS

LEDGER_CHUNK = 2000


def period_of(q: ExportQuery, *, window: str | None = None) -> Period:
    """The query's period, checked (config.errors.ValidationError → 400)."""
    return make_period(q.start, q.end, window=window or q.window, timezone=q.timezone)


def _dec(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _typed(columns, record: dict[str, Any]) -> tuple:
    out = []
    for name, kind in columns:
        value = record.get(name)
        out.append(_dec(value) if pa.types.is_decimal(kind) else value)
    return tuple(out)


# --- Unit-cost report -------------------------------------------------------------------------

_INTS = {"generations", "failed"}
_STRS = {"model", "pool", "stage", "kind"}


def _report_columns(names: Iterable[str]) -> tuple[tuple[str, pa.DataType], ...]:
    return tuple((n, INT if n in _INTS else STR if n in _STRS else DEC) for n in names)


UNIT_MODELS = _report_columns(MODEL_COLUMNS)
UNIT_POOLS = _report_columns(POOL_COLUMNS)
UNIT_STAGES = _report_columns(STAGE_COLUMNS)


def _unit_rows(table: str, columns) -> Callable[[ExportQuery], Iterator[tuple]]:
    def rows(q: ExportQuery) -> Iterator[tuple]:
        period_of(q)  # a bad period is refused here, before anything streams
        report = unit_cost_report(q.start, q.end, window=q.window, timezone=q.timezone)
        return iter([_typed(columns, r) for r in report.get(table, [])])

    return rows


# --- Ledger entries ---------------------------------------------------------------------------

LEDGER = (
    ("id", INT),
    ("created_at", TS),
    ("organization", STR),
    ("account_id", INT),
    ("sequence", INT),
    ("kind", STR),
    ("amount", CREDITS),
    ("balance_delta", CREDITS),
    ("held_delta", CREDITS),
    ("balance_after", CREDITS),
    ("held_after", CREDITS),
    ("grant_id", INT),
    ("hold_id", INT),
    ("reason", STR),
)


def _ledger_rows(q: ExportQuery) -> Iterator[tuple]:
    period = period_of(q, window="day")
    entries = (
        LedgerEntry.objects.filter(created_at__gte=period.start_at, created_at__lt=period.end_at)
        .order_by("created_at", "id")
        .values_list(
            "id",
            "created_at",
            "account__organization__slug",
            "account_id",
            "sequence",
            "kind",
            "amount",
            "balance_delta",
            "held_delta",
            "balance_after",
            "held_after",
            "grant_id",
            "hold_id",
            "reason",
        )
    )
    return entries.iterator(chunk_size=LEDGER_CHUNK)


# --- Usage: jobs per organization, model and local day ---------------------------------------

USAGE = (
    ("day", DAY),
    ("organization", STR),
    ("model", STR),
    ("jobs", INT),
    ("succeeded", INT),
    ("failed", INT),
    ("cancelled", INT),
    ("cached", INT),
    ("credits_charged", CREDITS),
)


def _usage_rows(q: ExportQuery) -> Iterator[tuple]:
    period = period_of(q, window="day")
    rows = (
        Job.objects.filter(created_at__gte=period.start_at, created_at__lt=period.end_at)
        .annotate(day=TruncDate("created_at", tzinfo=zone(period.timezone)))
        .values("day", "organization__slug", "model__slug")
        .annotate(
            jobs=Count("id"),
            succeeded=Count("id", filter=Q(status=JobStatus.SUCCEEDED)),
            failed=Count("id", filter=Q(status=JobStatus.FAILED)),
            cancelled=Count("id", filter=Q(status=JobStatus.CANCELLED)),
            cached=Count("id", filter=Q(cached=True)),
            credits_charged=Sum("credits_charged", default=Decimal(0)),
        )
        .order_by("day", "organization__slug", "model__slug")
        .values_list(
            "day",
            "organization__slug",
            "model__slug",
            "jobs",
            "succeeded",
            "failed",
            "cancelled",
            "cached",
            "credits_charged",
        )
    )
    return rows.iterator(chunk_size=LEDGER_CHUNK)


register(
    Dataset(
        "unit-costs-models",
        "Unit costs per model",
        "The unit-cost report's models table (spec §3): generations, GPU hours, active, "
        "allocated and fully loaded cost, cost per generation.",
        UNIT_MODELS,
        _unit_rows("models", UNIT_MODELS),
        windowed=True,
        order=10,
    ),
    Dataset(
        "unit-costs-pools",
        "Unit costs per pool",
        "The unit-cost report's pools table: uptime, busy and idle hours, cost, allocated "
        "and unallocated.",
        UNIT_POOLS,
        _unit_rows("pools", UNIT_POOLS),
        windowed=True,
        order=11,
    ),
    Dataset(
        "unit-costs-stages",
        "Unit costs per pipeline stage",
        "The unit-cost report's pipeline stages per model: CPU seconds and cost per generation.",
        UNIT_STAGES,
        _unit_rows("stages", UNIT_STAGES),
        windowed=True,
        order=12,
    ),
    Dataset(
        "ledger-entries",
        "Ledger entries",
        "Every credit ledger entry created in the period, oldest first, with its organization.",
        LEDGER,
        _ledger_rows,
        order=20,
    ),
    Dataset(
        "usage",
        "Usage",
        "Jobs per local day, organization and model: submitted, succeeded, failed, "
        "cancelled, served from cache, credits charged.",
        USAGE,
        _usage_rows,
        order=30,
    ),
)
