"""Report periods and their windows: local-calendar days or hours of a time zone, as UTC instants.

A period `[start, end)` is given as two local dates; it runs from the first instant of `start`
to the first instant of `end` in the time zone. Its windows are the local days (23, 24 or 25 h
long around DST changes) or the local hours (a repeated hour on the autumn change is two
windows; the skipped hour in spring is none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.errors import ValidationError

WINDOWS = ("day", "hour")
# Every UTC offset in use is a multiple of 15 minutes, so stepping by 15 minutes finds every
# local day or hour boundary.
_STEP = timedelta(minutes=15)
MAX_DAYS = 3700


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"Unknown time zone {name!r}.", errors={"timezone": [f"Unknown time zone {name!r}."]}
        ) from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of local date `day`, in UTC (a midnight skipped by DST maps to the
    instant of the change, which is the first instant of that day)."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    timezone: str
    window: str
    start_at: datetime  # UTC
    end_at: datetime  # UTC
    bounds: tuple[datetime, ...]  # window boundaries, UTC: bounds[0] = start_at, [-1] = end_at


def make_period(start: date, end: date, *, window: str = "day", timezone: str = "UTC") -> Period:
    if window not in WINDOWS:
        raise ValidationError(
            f"window must be one of {', '.join(WINDOWS)}.",
            errors={"window": [f"Must be one of: {', '.join(WINDOWS)}."]},
        )
    if end <= start:
        raise ValidationError(
            "end must be after start.", errors={"end": ["Must be after start (end is exclusive)."]}
        )
    if (end - start).days > MAX_DAYS:
        raise ValidationError(
            f"The period may span at most {MAX_DAYS} days.",
            errors={"end": [f"At most {MAX_DAYS} days after start."]},
        )
    tz = zone(timezone)
    start_at, end_at = local_midnight(start, tz), local_midnight(end, tz)
    bounds = [start_at]
    t = start_at
    prev_local = start_at.astimezone(tz)
    while True:
        t += _STEP
        if t >= end_at:
            break
        local = t.astimezone(tz)
        boundary = local.date() != prev_local.date() if window == "day" else local.minute == 0
        if boundary:
            bounds.append(t)
        prev_local = local
    bounds.append(end_at)
    return Period(
        start=start,
        end=end,
        timezone=timezone,
        window=window,
        start_at=start_at,
        end_at=end_at,
        bounds=tuple(bounds),
    )
