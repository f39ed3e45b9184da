"""Row sources of an import: a CSV file (keys: line numbers, the header being line 1) or API
rows (a JSON list of objects; keys: row indexes), as numbered rows to check."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TextIO

from config.errors import ValidationError
from infra_costs.imports.results import ImportRefused, ImportResult
from infra_costs.progress import Progress

NumberedRows = Iterable[tuple[int, tuple[str, ...] | None, list[str] | None]]
"""(key, values in column order, None) for a row to check, or (key, None, reasons) for a row
already known to be bad (wrong shape)."""


def csv_rows(
    stream: TextIO, columns: tuple[str, ...], *, on_row: Callable[[int], None] | None = None
) -> NumberedRows:
    """Rows of a CSV file as numbered rows (line 1 is the header). A header that is not exactly
    `columns` (in any order) refuses the file at once. The loop is the hot path of a 1M-row
    import: the C reader, no per-row generator, values reordered only when the header is."""
    reader = csv.reader(stream)
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
    in_order = order == list(range(len(columns)))
    width = len(columns)
    strip = str.strip
    join = "".join
    last_line = 1
    count = 0
    while True:
        try:
            for values in reader:
                start_line = last_line + 1
                last_line = reader.line_num
                if len(values) == width:
                    count += 1
                    if on_row is not None and not count & 4095:
                        on_row(count)
                    if "\x00" in join(values):  # PostgreSQL text cannot hold it: a row error
                        yield start_line, None, ["malformed CSV: line contains NUL"]
                    elif in_order:
                        yield start_line, tuple(map(strip, values)), None
                    else:
                        yield start_line, tuple(strip(values[i]) for i in order), None
                elif not values or (len(values) == 1 and not values[0].strip()):
                    continue  # blank line
                else:
                    count += 1
                    yield start_line, None, [f"expected {width} fields, got {len(values)}"]
        except csv.Error as exc:
            start_line = last_line + 1
            last_line = reader.line_num
            yield start_line, None, [f"malformed CSV: {exc}"]
            continue
        break
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
    total = _size_of(stream)
    position = _position_of(stream) if total else None

    def on_row(n: int) -> None:
        if progress is not None:
            at = position() if position is not None else None
            progress.update(n, min(at / total, 1.0) if at is not None and total else None)

    return csv_rows(stream, columns, on_row=on_row)


def _position_of(stream: TextIO) -> Callable[[], int | None] | None:
    """Bytes read so far of a file (read ahead by a buffer: close enough for a progress line)."""
    try:
        fd = stream.fileno()
        os.lseek(fd, 0, os.SEEK_CUR)
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None

    def position() -> int | None:
        try:
            return os.lseek(fd, 0, os.SEEK_CUR)
        except OSError:
            return None

    return position


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
