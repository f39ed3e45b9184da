"""Template filters of the staff report pages: USD, hours and fractions for people (the
report's 6-dp strings stay exact in the tables; these only shape them)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from infra_costs import charts

register = template.Library()
MINUS = "\u2212"


def _dec(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


@register.filter
def usd(value, places: int = 2) -> str:
    """`{{ x|usd }}` → "$1,234.57"; `{{ x|usd:6 }}` → "$1,234.567891" (exact report digits)."""
    v = _dec(value)
    if v is None:
        return "—"
    text = f"{abs(v):,.{int(places)}f}"
    return (MINUS if v < 0 else "") + "$" + text


@register.filter
def usd_short(value) -> str:
    """Short money for small figures: $14.16, $0.0123."""
    return charts.usd_short(_dec(value))


@register.filter
def pct(value, places: int = 1) -> str:
    """A fraction as a percentage: 0.949074 → "94.9%"."""
    v = _dec(value)
    if v is None:
        return "—"
    text = f"{abs(v) * 100:.{int(places)}f}%"
    return (MINUS if v < 0 else "") + text


@register.filter
def hours(value) -> str:
    v = _dec(value)
    if v is None:
        return "—"
    return f"{v:,.1f}"


@register.filter
def num(value) -> str:
    """A decimal with thousands separators, all its digits kept ("1,234.500000")."""
    v = _dec(value)
    if v is None:
        return "—"
    places = max(0, -v.as_tuple().exponent) if isinstance(v.as_tuple().exponent, int) else 0
    text = f"{abs(v):,.{places}f}"
    return (MINUS if v < 0 else "") + text


@register.filter
def credits_plain(value) -> str:
    """Credits without trailing zeros: 2361.000 → "2,361"; 12.500 → "12.5"."""
    v = _dec(value)
    if v is None:
        return "—"
    text = f"{abs(v):,.3f}".rstrip("0").rstrip(".")
    return (MINUS if v < 0 else "") + text


@register.filter
def signed_credits(value) -> str:
    v = _dec(value)
    if v is None:
        return "—"
    text = credits_plain(abs(v))
    return ("+" if v > 0 else MINUS if v < 0 else "±") + text
