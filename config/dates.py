"""The calendar dates the project accepts from people and API callers.

Dates far from today are refused where they are parsed (a form error on pages, a 400 in the
API) rather than overflowing later, when code adds or subtracts days (`date.max + 1 day`,
`date.min − 30 days`) or converts time zones: [EARLIEST, LATEST] leaves room for both.
"""

from __future__ import annotations

from datetime import date, datetime

EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)
OUT_OF_RANGE = f"Use a date between {EARLIEST.isoformat()} and {LATEST.isoformat()}."


def in_range(value: date | datetime) -> bool:
    day = value.date() if isinstance(value, datetime) else value
    return EARLIEST <= day <= LATEST
