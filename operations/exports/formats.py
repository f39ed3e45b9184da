"""Rows out as CSV (streamed line by line) or Parquet (written batch by batch to a spooled
temporary file: memory stays bounded by one batch and the spool's threshold, whatever the
number of rows)."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from config.exports import Dataset

FORMATS = ("csv", "parquet")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
BATCH_ROWS = 10_000
SPOOL_BYTES = 16 * 1024 * 1024
READ_BYTES = 256 * 1024


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# A text cell starting with one of these is a formula to spreadsheets (CSV injection): such
# cells get a leading apostrophe, as OWASP recommends. Only text columns: numbers keep their sign.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value) -> str:
    text = _cell(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(dataset: Dataset, rows: Iterable[tuple]) -> Iterator[str]:
    """The header, then one line per row (decimals in full, empty for none; text that a
    spreadsheet would run as a formula is defused)."""
    cells = [_text_cell if pa.types.is_string(kind) else _cell for _, kind in dataset.columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def line(values) -> str:
        buf.seek(0)
        buf.truncate()
        writer.writerow(values)
        return buf.getvalue()

    yield line(dataset.names)
    for row in rows:
        yield line([cell(v) for cell, v in zip(cells, row, strict=True)])


def parquet_file(dataset: Dataset, rows: Iterable[tuple]) -> IO[bytes]:
    """A Parquet file of the rows (Arrow types of `dataset.columns`), rewound for reading."""
    schema = dataset.schema
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned open
    rows = iter(rows)
    with pq.ParquetWriter(spool, schema, compression="zstd") as writer:
        wrote = False
        while batch := list(islice(rows, BATCH_ROWS)):
            columns = list(zip(*batch, strict=True))
            writer.write_batch(
                pa.RecordBatch.from_arrays(
                    [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                    schema=schema,
                )
            )
            wrote = True
        if not wrote:
            writer.write_table(schema.empty_table())
    spool.seek(0)
    return spool


def file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := handle.read(READ_BYTES):
            yield chunk
    finally:
        handle.close()
