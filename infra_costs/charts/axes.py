"""Shared pieces of the staff report's charts: the viewBox width, nice scale ceilings, ticks,
and short numbers for labels (rounded for reading; the tables have the exact ones)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

W = 720  # viewBox width of every chart
LINE = 30  # room for one line of text at the largest CSS size (26 units on phones)
ZERO = Decimal(0)


def nice_ceiling(value) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ that is ≥ value (1 for zero or less)."""
    value = Decimal(value)
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for _ in range(2):
        for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
            candidate = step.scaleb(exponent)
            if candidate >= value:
                return candidate
        exponent += 1
    return value


def usd_short(value: Decimal | None) -> str:
    """$1,234 · $14.16 · $0.0668 · $0.05 — for charts and compact cells (3 significant
    digits below $1, trailing zeros dropped down to cents)."""
    if value is None:
        return "—"
    v = Decimal(value)
    a = abs(v)
    if a >= 1000:
        text = f"{a:,.0f}"
    elif a >= 1:
        text = f"{a:,.2f}"
    elif a == 0:
        text = "0"
    elif a >= Decimal("0.0001"):
        text = format(Decimal(f"{a:.3g}"), "f")
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0").ljust(2, "0")
        text = f"{whole}.{frac}"
    else:
        text = f"{a:.1e}"
    return ("\u2212$" if v < 0 else "$") + text


def usd_tick(value: Decimal) -> str:
    """A scale label: $250 rather than $250.00, $0.125 as is."""
    text = usd_short(value)
    return text[:-3] if text.endswith(".00") else text


def hours_short(value: Decimal) -> str:
    v = Decimal(value)
    if v >= 100:
        return f"{v:,.0f} h"
    return f"{v:.1f} h".replace(".0 h", " h")


def pct(value: Decimal | None, places: int = 0) -> str:
    if value is None:
        return "—"
    return f"{Decimal(value) * 100:.{places}f}%"


def round2(x: Decimal | float | int) -> float:
    return round(float(x), 2)


@dataclass(frozen=True)
class Tick:
    pos: float  # x or y in the viewBox
    label: str
    anchor: str = "middle"
