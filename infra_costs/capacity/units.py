"""Units of the capacity recommendation: time is integer microseconds, the week 168 slots."""

from __future__ import annotations

from datetime import timedelta

SLOTS = 7 * 24
US = timedelta(microseconds=1)
US_PER_S = 1_000_000
US_PER_H = 3600 * US_PER_S
