"""Template filters of the staff report pages: USD, hours and fractions for people (the
report's 6-dp strings stay exact in the tables; these only shape them). Missing values read
"—". The formats themselves are the project's one set (`config.web.formats`)."""

from __future__ import annotations

from django import template

from config.web.formats import MINUS, format_credits, format_percent, format_usd, to_decimal
from infra_costs import charts

register = template.Library()
EMPTY = "—"


@register.filter
def usd(value, places: int = 2) -> str:
    """`{{ x|usd }}` → "$1,234.57"; `{{ x|usd:6 }}` → "$1,234.567891" (exact report digits)."""
    return format_usd(value, places=places, empty=EMPTY)


@register.filter
def usd_short(value) -> str:
    """Short money for small figures: $14.16, $0.0123."""
    return charts.usd_short(to_decimal(value))


@register.filter
def pct(value, places: int = 1) -> str:
    """A fraction as a percentage: 0.949074 → "94.9%"."""
    return format_percent(value, places=places, empty=EMPTY)


@register.filter
def hours(value) -> str:
    v = to_decimal(value)
    if v is None:
        return EMPTY
    return f"{v:,.1f}"


@register.filter
def num(value) -> str:
    """A decimal with thousands separators, all its digits kept ("1,234.500000")."""
    v = to_decimal(value)
    if v is None:
        return EMPTY
    places = max(0, -v.as_tuple().exponent) if isinstance(v.as_tuple().exponent, int) else 0
    text = f"{abs(v):,.{places}f}"
    return (MINUS if v < 0 else "") + text


@register.filter
def credits_plain(value) -> str:
    """Credits without trailing zeros: 2361.000 → "2,361"; 12.500 → "12.5"."""
    return format_credits(to_decimal(value), empty=EMPTY)


@register.filter
def signed_credits(value) -> str:
    """ "+12.5", "−3", "±0"."""
    v = to_decimal(value)
    if v is None:
        return EMPTY
    return ("+" if v > 0 else MINUS if v < 0 else "±") + format_credits(abs(v))
