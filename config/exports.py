"""The registry of analyst exports (plumbing: no app imported here).

Apps register their datasets when they load (`AppConfig.ready`): `operations.exports.datasets`
(the unit-cost report, ledger entries, usage) and `planning.exports` (margins). The staff API
and page (`operations`) list and serve whatever is registered, so an app lower in the layers —
or beside `operations`, as `planning` is — adds an export without being imported by it.

A dataset is its columns (name and Arrow type) and a `rows(query)` callable. `rows` checks
the period and computes everything that can fail *before* it returns, so a bad request is
refused before a response starts streaming; the rows themselves may then be read lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

DEC = pa.decimal128(38, 6)  # USD, hours and fractions: the reports' 6 decimal places
CREDITS = pa.decimal128(38, 3)  # credit amounts (accounts.models.CREDIT_DECIMALS)
INT = pa.int64()
STR = pa.string()
DAY = pa.date32()
TS = pa.timestamp("us", tz="UTC")
BOOL = pa.bool_()


@dataclass(frozen=True)
class ExportQuery:
    """A period [start, end) of local dates in `timezone`; `window` for windowed datasets.
    Checked by each dataset (`infra_costs.periods.make_period`)."""

    start: date
    end: date
    window: str = "day"
    timezone: str = "UTC"


@dataclass(frozen=True)
class Dataset:
    slug: str
    title: str
    description: str
    columns: tuple[tuple[str, pa.DataType], ...]
    rows: Callable[[ExportQuery], Iterator[tuple]]
    order: int = 100  # position in listings
    windowed: bool = False  # takes `window` (day or hour), as the unit-cost report does

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(list(self.columns))


_REGISTRY: dict[str, Dataset] = {}


def register(*datasets: Dataset) -> None:
    for dataset in datasets:
        _REGISTRY[dataset.slug] = dataset


def datasets() -> dict[str, Dataset]:
    """The registered datasets by slug, in listing order."""
    return {d.slug: d for d in sorted(_REGISTRY.values(), key=lambda d: (d.order, d.slug))}
