"""Keyset paging cursors (config/web/paging.py); the pages themselves are tested through the
ledger and job history views."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from config.web.paging import decode_cursor, encode_cursor
from credits.models import LedgerEntry
from generations.models import Job


def test_integer_cursor_round_trip():
    entry = LedgerEntry(pk=42, created_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC))

    assert decode_cursor(encode_cursor(entry)) == (entry.created_at, 42)
    assert decode_cursor("") is None
    assert decode_cursor("1.2.3") is None


def test_uuid_cursor_round_trip():
    job = Job(created_at=datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC))

    assert decode_cursor(encode_cursor(job), pk_type=uuid.UUID) == (job.created_at, job.pk)
    assert decode_cursor("1.zz", pk_type=uuid.UUID) is None
    assert decode_cursor("99999999999999999999.00", pk_type=uuid.UUID) is None


def test_a_cursor_of_the_other_key_type_is_refused():
    assert decode_cursor(f"1.{uuid.uuid4().hex}") is None
    assert decode_cursor("1.42", pk_type=uuid.UUID) is None
