"""One week of a pool's capacity plan (hour-of-week, Monday 00:00 first, in the pool's time
zone): busy nodes per hour as bars (the mean over the weeks, i.e. busy node-hours per hour),
the current schedule and the recommended set-points as step lines, on one node scale."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from infra_costs.charts.axes import LINE, Tick, W, nice_ceiling, round2

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SLOTS = 168


@dataclass(frozen=True)
class HourBar:
    slot: int
    x: float
    y: float
    w: float
    h: float
    busy: Decimal
    label: str


@dataclass(frozen=True)
class CapacityChart:
    pool: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[HourBar]
    current_points: str  # "" when the current capacity has no weekly schedule
    recommended_points: str
    nodes_max: Decimal
    ticks: list[Tick]
    day_ticks: list[Tick]
    day_lines: list[float]

    @property
    def plot_mid(self) -> float:
        return (self.plot_top + self.plot_bottom) / 2

    @property
    def label_y(self) -> int:
        return self.height - 8


def _steps(values: list[int], y_of) -> str:
    slot = W / SLOTS
    points: list[str] = []
    for i, v in enumerate(values):
        y = y_of(v)
        points.append(f"{round2(i * slot)},{y}")
        points.append(f"{round2((i + 1) * slot)},{y}")
    return " ".join(points)


def capacity_chart(
    pool: str,
    busy: list[Fraction],
    current: list[int] | None,
    recommended: list[int],
) -> CapacityChart:
    height, plot_top, plot_bottom = 300, LINE + 4, 300 - LINE - 8
    plot_h = plot_bottom - plot_top
    top = max([*(float(b) for b in busy), *(current or []), *recommended, 1])
    nodes_max = nice_ceiling(Decimal(str(top)))

    def y_of(v) -> float:
        return round2(plot_bottom - float(Decimal(str(float(v))) / nodes_max) * plot_h)

    slot = W / SLOTS
    bars = []
    for i, b in enumerate(busy):
        value = Decimal(b.numerator) / Decimal(b.denominator)
        h = float(value / nodes_max) * plot_h
        bars.append(
            HourBar(
                slot=i,
                x=round2(i * slot + slot * 0.1),
                y=round2(plot_bottom - h),
                w=round2(slot * 0.8),
                h=round2(h),
                busy=value.quantize(Decimal("0.01")),
                label=f"{DAYS[i // 24]} {i % 24:02d}:00",
            )
        )
    ticks = [
        Tick(round2(plot_bottom - plot_h * k / 2), f"{(nodes_max * k / 2).normalize():f}", "start")
        for k in (1, 2)
    ]
    day_ticks = [Tick(round2((d + 0.5) * 24 * slot), DAYS[d]) for d in range(7)]
    return CapacityChart(
        pool=pool,
        width=W,
        height=height,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        bars=bars,
        current_points=_steps(current, y_of) if current else "",
        recommended_points=_steps(recommended, y_of),
        nodes_max=nodes_max,
        ticks=ticks,
        day_ticks=day_ticks,
        day_lines=[round2(d * 24 * slot) for d in range(1, 7)],
    )
