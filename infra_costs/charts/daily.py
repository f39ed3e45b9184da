"""Daily (or weekly) cost vs busy and uptime node-hours of one pool: bars and lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from infra_costs.charts.axes import (
    LINE,
    ZERO,
    Tick,
    W,
    hours_short,
    nice_ceiling,
    round2,
    usd_tick,
)
from infra_costs.selectors import PoolDay


@dataclass(frozen=True)
class DayBar:
    day: PoolDay
    x: float
    y: float
    w: float
    h: float
    slot_x: float
    cx: float
    busy_y: float
    up_y: float
    label: str | None
    label_x: float
    anchor: str
    minor: bool = False


@dataclass(frozen=True)
class DailyChart:
    pool: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    slot: float
    bars: list[DayBar]
    cost_max: Decimal
    hours_max: Decimal
    busy_points: str
    up_points: str
    total_cost: Decimal
    total_busy: Decimal
    total_up: Decimal
    weekly: bool
    first: date | None
    last: date | None
    cost_ticks: list[Tick] = field(default_factory=list)
    hours_ticks: list[Tick] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.total_up == 0 and self.total_cost == 0

    @property
    def idle_fraction(self) -> Decimal | None:
        return None if not self.total_up else (self.total_up - self.total_busy) / self.total_up

    @property
    def plot_mid(self) -> float:
        return (self.plot_top + self.plot_bottom) / 2

    @property
    def label_y(self) -> int:
        return self.height - 8

    @property
    def scale_y(self) -> int:
        return self.plot_top - 10

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top

    @property
    def center_x(self) -> float:
        return self.width / 2


def daily_chart(pool: str, days: list[PoolDay], *, weekly: bool = False) -> DailyChart:
    """Cost per day as bars (left scale, USD), busy and uptime node-hours per day as lines
    (right scale, hours): the gap between the two lines is the idle time being paid for."""
    height, plot_top, plot_bottom = 330, 2 * LINE, 330 - LINE - 8
    n = len(days)
    cost_max = nice_ceiling(max((d.cost_usd for d in days), default=ZERO))
    hours_max = nice_ceiling(max((d.uptime_hours for d in days), default=ZERO))
    plot_h = plot_bottom - plot_top
    slot = W / max(n, 1)
    bar_w = slot * (0.72 if n > 1 else 0.4)
    every = 1 if n <= 8 else 2 if n <= 16 else 7 if n <= 62 else 14
    labelled = set(range(0, n, every))
    bars = []
    for i, d in enumerate(days):
        h = float(d.cost_usd / cost_max) * plot_h
        if d.cost_usd > 0:
            h = max(h, 1.5)
        cx = i * slot + slot / 2
        label = None
        # On narrow charts (phones) every other label of a dense axis is hidden by CSS.
        minor = every <= 2 and n > 8 and (i // every) % 2 == 1
        if i in labelled:
            label = f"{d.day.day} {d.day:%b}" if (weekly or n > 8) else f"{d.day:%a} {d.day.day}"
        first_or_last = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else None
        bars.append(
            DayBar(
                day=d,
                x=round2(i * slot + (slot - bar_w) / 2),
                y=round2(plot_bottom - h),
                w=round2(bar_w),
                h=round2(h),
                slot_x=round2(i * slot),
                cx=round2(cx),
                busy_y=round2(plot_bottom - float(d.busy_hours / hours_max) * plot_h),
                up_y=round2(plot_bottom - float(d.uptime_hours / hours_max) * plot_h),
                label=label,
                label_x=round2(
                    0 if first_or_last == "start" else W if first_or_last == "end" else cx
                ),
                anchor=first_or_last or "middle",
                minor=minor,
            )
        )
    cost_ticks = [
        Tick(round2(plot_bottom - plot_h * k / 2), usd_tick(cost_max * k / 2), "start")
        for k in (1, 2)
    ]
    hours_ticks = [
        Tick(round2(plot_bottom - plot_h * k / 2), hours_short(hours_max * k / 2), "end")
        for k in (1, 2)
    ]
    return DailyChart(
        pool=pool,
        width=W,
        height=height,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        slot=round2(slot),
        bars=bars,
        cost_max=cost_max,
        hours_max=hours_max,
        busy_points=" ".join(f"{b.cx},{b.busy_y}" for b in bars),
        up_points=" ".join(f"{b.cx},{b.up_y}" for b in bars),
        total_cost=sum((d.cost_usd for d in days), ZERO),
        total_busy=sum((d.busy_hours for d in days), ZERO),
        total_up=sum((d.uptime_hours for d in days), ZERO),
        weekly=weekly,
        first=days[0].day if days else None,
        last=days[-1].day if days else None,
        cost_ticks=cost_ticks,
        hours_ticks=hours_ticks,
    )
