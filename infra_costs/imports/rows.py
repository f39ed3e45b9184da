"""Row sources of an import: a CSV file (keys: line numbers, the header being line 1) or API
rows (a JSON list of objects; keys: row indexes), as numbered rows to check."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, TextIO

from config.errors import ValidationError
from infra_costs.imports.results import ImportRefused, ImportResult
from infra_costs.progress import Progress

NumberedRows = Iterable[tuple[int, tuple[str, ...] | None, list[str] | None]]
"""(key, values in column order, None) for a row to check, or (key, None, reasons) for a row
already known to be bad (wrong shape)."""


class _CountingLines:
    """Iterates a text file's lines, counting characters read (for the progress line)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.chars = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.stream:
            self.chars += len(line)
            yield line


def csv_rows(
    stream: TextIO, columns: tuple[str, ...], *, on_row: Callable[[int], None] | None = None
) -> NumberedRows:
    """Rows of a CSV file as numbered rows (line 1 is the header). A header that is not exactly
    `columns` (in any order) refuses the file at once."""
    counting = stream if isinstance(stream, _CountingLines) else _CountingLines(stream)
    reader = csv.reader(counting)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        raise _refused_header(f"unreadable header: {exc}") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    problems = _header_problems(header, columns)
    if problems:
        raise _refused_header(problems)
    order = [header.index(c) for c in columns]
    width = len(columns)
    last_line = 1
    count = 0
    while True:
        start_line = last_line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            last_line = reader.line_num
            yield start_line, None, [f"malformed CSV: {exc}"]
            continue
        last_line = reader.line_num
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        count += 1
        if on_row is not None and count % 4096 == 0:
            on_row(count)
        if len(values) != width:
            yield start_line, None, [f"expected {width} fields, got {len(values)}"]
            continue
        yield start_line, tuple(values[i].strip() for i in order), None
    if on_row is not None:
        on_row(count)


def _header_problems(header: list[str], columns: tuple[str, ...]) -> str:
    if not header:
        return f"empty file: expected the header {','.join(columns)}"
    missing = [c for c in columns if c not in header]
    unexpected = [h for h in header if h not in columns]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    parts = []
    if missing:
        parts.append(f"missing column(s) {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected column(s) {', '.join(unexpected)}")
    if duplicated:
        parts.append(f"duplicated column(s) {', '.join(duplicated)}")
    if parts:
        return f"{'; '.join(parts)} (expected {','.join(columns)})"
    return ""


def _refused_header(reason: str) -> ImportRefused:
    return ImportRefused(ImportResult(kind="file", errors={1: [reason]}))


def json_rows(rows: Any, columns: tuple[str, ...]) -> NumberedRows:
    """API rows (a JSON list of objects) as numbered rows keyed by index (0-based)."""
    if not isinstance(rows, list | tuple):
        raise ValidationError(
            "The body must be a JSON list of objects.",
            errors={"non_field_errors": ["Expected a list of objects."]},
        )
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            yield index, None, ["expected an object"]
            continue
        reasons = []
        missing = [c for c in columns if row.get(c) is None]
        unexpected = sorted(str(k) for k in row if k not in columns)
        if missing:
            reasons.append(f"missing field(s) {', '.join(missing)}")
        if unexpected:
            reasons.append(f"unexpected field(s) {', '.join(unexpected)}")
        if reasons:
            yield index, None, reasons
            continue
        values = []
        for c in columns:
            value = row[c]
            if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
                reasons.append(f"{c}: expected a string")
                value = ""
            values.append(str(value).strip())
        if reasons:
            yield index, None, reasons
        else:
            yield index, tuple(values), None


def file_rows(stream: TextIO, columns: tuple[str, ...], progress: Progress | None) -> NumberedRows:
    counting = _CountingLines(stream)
    total = _size_of(stream)

    def on_row(n: int) -> None:
        if progress is not None:
            progress.update(n, counting.chars / total if total else None)

    return csv_rows(counting, columns, on_row=on_row)


def _size_of(stream: TextIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size or None
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None


def open_csv(path: str) -> TextIO:
    """A CSV file for reading (`-` is standard input); a UTF-8 BOM is ignored."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")
