"""Idle heatmap of one pool: hour of day × day (or week)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from infra_costs.charts.axes import (
    LINE,
    ZERO,
    Tick,
    W,
    hours_short,
    pct,
    round2,
)
from infra_costs.selectors import HeatCell

HEAT_BINS = [
    (Decimal("0.2"), "heat-0", "0–20%"),
    (Decimal("0.4"), "heat-1", "20–40%"),
    (Decimal("0.6"), "heat-2", "40–60%"),
    (Decimal("0.8"), "heat-3", "60–80%"),
    (Decimal("1.01"), "heat-4", "80–100%"),
]


def heat_class(fraction: Decimal | None) -> str:
    if fraction is None:
        return "heat-off"
    for limit, css, _ in HEAT_BINS:
        if fraction < limit:
            return css
    return HEAT_BINS[-1][1]


@dataclass(frozen=True)
class HeatRect:
    x: float
    y: float
    css: str
    title: str


@dataclass(frozen=True)
class HeatRow:
    day: date
    y: float
    label: str | None  # None: too many rows to label each
    label_y: float
    minor: bool  # label hidden on phones (rows too close for the larger text)
    idle_fraction: Decimal | None
    uptime_hours: Decimal
    idle_hours: Decimal


@dataclass(frozen=True)
class Heatmap:
    pool: str
    width: int
    height: int
    left: int
    top: int
    cell_w: float
    cell_h: float
    rects: list[HeatRect]
    rows: list[HeatRow]
    hour_ticks: list[Tick]
    hour_totals: list[HeatCell]  # per hour of day, over all rows
    weekly: bool
    legend: list[tuple[str, str]]
    with_titles: bool

    @property
    def grid_w(self) -> float:
        return round2(self.cell_w * 24)

    @property
    def grid_h(self) -> float:
        return round2(self.cell_h * len(self.rows))

    @property
    def empty(self) -> bool:
        return not any(r.uptime_hours for r in self.rows)

    @property
    def worst_hour(self) -> HeatCell | None:
        cells = [c for c in self.hour_totals if c.idle_fraction is not None]
        return max(cells, key=lambda c: (c.idle_fraction, -c.hour), default=None)

    @property
    def best_hour(self) -> HeatCell | None:
        cells = [c for c in self.hour_totals if c.idle_fraction is not None]
        return min(cells, key=lambda c: (c.idle_fraction, c.hour), default=None)


def heatmap(pool: str, rows_in: list[tuple[date, list[HeatCell]]], *, weekly: bool = False):
    """Rows = days (weeks for long periods), columns = the 24 hours of the day; each cell's
    colour is the idle share of the node-hours up in it (hatched: no node up)."""
    n = len(rows_in)
    left, top = 120, LINE + 6
    cell_w = (W - left) / 24
    cell_h = 26 if n <= 16 else 20 if n <= 35 else 13
    every, every_phone = (1, 2) if cell_h >= 20 else (7, 7)
    with_titles = n <= 35
    rects, rows = [], []
    hour_up = [ZERO] * 24
    hour_idle = [ZERO] * 24
    for r, (day, cells) in enumerate(rows_in):
        y = top + r * cell_h
        up = sum((c.uptime_hours for c in cells), ZERO)
        idle = sum((c.idle_hours for c in cells), ZERO)
        for c in cells:
            hour_up[c.hour] += c.uptime_hours
            hour_idle[c.hour] += c.idle_hours
            title = ""
            if with_titles:
                when = f"{day:%a} {day.day} {day:%b}"
                when = f"week of {when}" if weekly else when
                if c.idle_fraction is None:
                    title = f"{when}, {c.hour:02d}:00: no node up"
                else:
                    title = (
                        f"{when}, {c.hour:02d}:00–{(c.hour + 1) % 24:02d}:00: "
                        f"{pct(c.idle_fraction)} idle of {hours_short(c.uptime_hours)} up"
                    )
            rects.append(
                HeatRect(
                    x=round2(left + c.hour * cell_w),
                    y=round2(y),
                    css=heat_class(c.idle_fraction),
                    title=title,
                )
            )
        rows.append(
            HeatRow(
                day=day,
                y=round2(y),
                label=(
                    None
                    if r % every
                    else f"wk {day.day} {day:%b}"
                    if weekly
                    else f"{day:%a} {day.day}"
                ),
                label_y=round2(y + cell_h / 2),
                minor=r % every_phone != 0,
                idle_fraction=None if not up else idle / up,
                uptime_hours=up,
                idle_hours=idle,
            )
        )
    hour_ticks = [Tick(round2(left + h * cell_w + cell_w / 2), f"{h:02d}") for h in range(0, 24, 3)]
    height = top + max(n, 1) * cell_h + 4
    return Heatmap(
        pool=pool,
        width=W,
        height=int(height),
        left=left,
        top=top,
        cell_w=round2(cell_w),
        cell_h=cell_h,
        rects=rects,
        rows=rows,
        hour_ticks=hour_ticks,
        hour_totals=[HeatCell(h, hour_up[h], hour_idle[h]) for h in range(24)],
        weekly=weekly,
        legend=[(css, label) for _, css, label in HEAT_BINS],
        with_titles=with_titles,
    )
