"""Idle fraction per pool: horizontal bars."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from infra_costs.charts.axes import (
    LINE,
    Tick,
    W,
    pct,
    round2,
)


@dataclass(frozen=True)
class IdleBar:
    pool: str
    fraction: Decimal | None
    idle_hours: Decimal
    uptime_hours: Decimal
    label_y: float
    y: float
    w: float
    text: str
    text_x: float
    text_inside: bool
    mid: float


@dataclass(frozen=True)
class IdleChart:
    width: int
    height: int
    bar_h: int
    plot_w: float
    top: float
    bars: list[IdleBar]
    ticks: list[Tick]
    total: Decimal | None
    total_x: float | None

    @property
    def empty(self) -> bool:
        return not self.bars

    @property
    def plot_bottom(self) -> float:
        return self.height - 4

    @property
    def scale_y(self) -> float:
        return self.top - 10

    @property
    def center_x(self) -> float:
        return self.width / 2


ANCHORS_5 = ("start", "middle", "middle", "middle", "end")


def idle_chart(pools: list[dict], total_fraction: str | None) -> IdleChart:
    """Each pool's idle share of its uptime (0–100 %), with the period's overall share as a
    dashed marker."""
    bar_h = 24
    group_h = LINE + bar_h + 16
    top = LINE + 4
    plot_w = W - 4
    bars = []
    for i, p in enumerate(pools):
        frac = None if p["idle_fraction"] is None else Decimal(p["idle_fraction"])
        y0 = top + i * group_h
        w = float(frac or 0) * plot_w
        inside = w > plot_w * 0.75
        bars.append(
            IdleBar(
                pool=p["pool"],
                fraction=frac,
                idle_hours=Decimal(p["idle_hours"]),
                uptime_hours=Decimal(p["uptime_hours"]),
                label_y=round2(y0 + LINE - 8),
                y=round2(y0 + LINE),
                w=round2(w),
                text=pct(frac, 1) + " idle" if frac is not None else "no uptime",
                text_x=round2(w - 8 if inside else w + 8),
                text_inside=inside,
                mid=round2(y0 + LINE + bar_h / 2),
            )
        )
    total = None if total_fraction is None else Decimal(total_fraction)
    height = top + max(len(bars), 1) * group_h
    return IdleChart(
        width=W,
        height=int(height),
        bar_h=bar_h,
        plot_w=plot_w,
        top=top,
        bars=bars,
        ticks=[Tick(round2(plot_w * k / 4), f"{25 * k}%", ANCHORS_5[k]) for k in range(5)],
        total=total,
        total_x=None if total is None else round2(float(total) * plot_w),
    )
