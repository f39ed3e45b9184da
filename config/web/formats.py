"""Numbers and dates for people: credits, USD, percentages (exact: Decimal, never float) and
moments (`format_datetime`, the one date format of the customer pages).

The apps' template libraries (`credits_ui`, `billing_ui`, `staff_ui`) register these as
filters (a library must live in an installed app, and config is not one); views use them
directly for messages. `empty` is what a missing value reads as: "" in customer pages, "—" in
the staff tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.utils.dateformat import format as date_format

MINUS = "\u2212"  # a real minus sign, not a hyphen


def to_decimal(value) -> Decimal | None:
    """`value` as a Decimal (through its string, never float); None for None, "" or junk."""
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def format_credits(value, *, exact: bool = False, signed: bool = False, empty: str = "") -> str:
    """A credit amount: thousands separators, a real minus sign, 3 decimals when `exact`, else
    trailing zeros trimmed ("1,250.5"); `signed` adds "+" to positive amounts. Junk is shown
    as it is."""
    if value is None or value == "":
        return empty
    amount = to_decimal(value)
    if amount is None:
        return str(value)
    text = f"{abs(amount):,.3f}"
    if not exact:
        text = text.rstrip("0").rstrip(".")
    if amount < 0:
        return MINUS + text
    if signed and amount > 0:
        return "+" + text
    return text


def format_usd(value, *, places: int = 2, empty: str = "") -> str:
    """ "$1,234.50", "−$3.00"; `places` decimals (the reports' exact figures use 6)."""
    amount = to_decimal(value)
    if amount is None:
        return empty
    text = f"${abs(amount):,.{int(places)}f}"
    return MINUS + text if amount < 0 else text


def format_percent(value, *, places: int = 1, empty: str = "") -> str:
    """A fraction as a percentage: 0.949074 → "94.9%"."""
    fraction = to_decimal(value)
    if fraction is None:
        return empty
    text = f"{abs(fraction) * 100:.{int(places)}f}%"
    return (MINUS if fraction < 0 else "") + text


DATETIME_FORMAT = "j M Y, H:i:s"  # "2 Dec 2026, 09:53:33": every page, always in UTC


def format_datetime(value, *, ms: bool = False, empty: str = "") -> str:
    """A moment as every page shows it: "2 Dec 2026, 09:53:33" in UTC (the pages say "UTC"
    once); `ms` adds milliseconds (".042") where events are close together."""
    if not isinstance(value, datetime):
        return empty
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    text = date_format(value, DATETIME_FORMAT)
    if ms:
        text += f".{value.microsecond // 1000:03d}"
    return text
