"""Keyset pagination over (created_at, id), newest first, and the cursors of its page links.

Stable under inserts (no OFFSET): walking "older" visits each row once. The web pages carry a
cursor per link (`?before=` / `?after=`): "<microseconds since epoch>.<id>", the id being an
integer or a UUID's hex. (The API uses DRF's cursor pagination: `config.api.pagination`.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

Key = tuple[datetime, Any]  # (created_at, id) of a row

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR_RE = {
    int: re.compile(r"^(\d{1,18})\.(\d{1,18})$"),
    uuid.UUID: re.compile(r"^(\d{1,18})\.([0-9a-f]{32})$"),
}


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first. `has_newer`/`has_older`: whether rows exist beyond the
    first/last one shown (the cursors are the (created_at, id) of those rows)."""

    items: list
    has_newer: bool
    has_older: bool


def newer_than(created_at: datetime, pk: Any) -> Q:
    return Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=pk)


def older_than(created_at: datetime, pk: Any) -> Q:
    return Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)


def keyset_page(
    qs: QuerySet, *, before: Key | None = None, after: Key | None = None, limit: int = 50
) -> Page:
    """The page of `limit` rows just older than `before` / newer than `after` (the newest page
    without either; `after` with nothing newer: the newest page too)."""
    if after is not None:
        rows = list(qs.filter(newer_than(*after)).order_by("created_at", "id")[: limit + 1])
        if not rows:
            return keyset_page(qs, limit=limit)
        items = rows[:limit][::-1]
        has_older = qs.filter(older_than(items[-1].created_at, items[-1].pk)).exists()
        return Page(items, len(rows) > limit, has_older)
    page_qs = qs.filter(older_than(*before)) if before is not None else qs
    rows = list(page_qs.order_by("-created_at", "-id")[: limit + 1])
    items = rows[:limit]
    has_newer = bool(items) and qs.filter(newer_than(items[0].created_at, items[0].pk)).exists()
    if before is not None and not items:
        has_newer = qs.exclude(older_than(*before)).exists()
    return Page(items, has_newer, len(rows) > limit)


def keyset_iter(qs: QuerySet, *, batch: int = 1000) -> Iterator:
    """Every row of `qs`, newest first, fetched in keyset batches of `batch` (no OFFSET, no
    long-lived database cursor): for streaming exports."""
    key = None
    while True:
        page_qs = qs.filter(older_than(*key)) if key is not None else qs
        rows = list(page_qs.order_by("-created_at", "-id")[:batch])
        yield from rows
        if len(rows) < batch:
            return
        key = (rows[-1].created_at, rows[-1].pk)


def encode_cursor(row: Any) -> str:
    """(created_at, id) as "<microseconds since epoch>.<id>": exact, opaque enough."""
    micros = (row.created_at - _EPOCH) // timedelta(microseconds=1)
    pk = row.pk.hex if isinstance(row.pk, uuid.UUID) else row.pk
    return f"{micros}.{pk}"


def decode_cursor(value: str, *, pk_type: type = int) -> Key | None:
    """`encode_cursor`'s (created_at, id) back, or None for anything malformed. `pk_type`:
    int or uuid.UUID, the type of the rows' primary key."""
    match = _CURSOR_RE[pk_type].match(value or "")
    if not match:
        return None
    try:
        created_at = _EPOCH + timedelta(microseconds=int(match.group(1)))
    except OverflowError:
        return None
    pk = uuid.UUID(hex=match.group(2)) if pk_type is uuid.UUID else int(match.group(2))
    return created_at, pk
