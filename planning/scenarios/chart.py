"""Cost vs revenue per scenario (or per sensitivity case): grouped horizontal bars on a common
USD scale, drawn server-side as inline SVG with the staff report's chart helpers
(`infra_costs.charts.axes`) and CSS classes — no script, no external asset. Numbers in the chart
are rounded for reading; the tables next to it have the exact ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from infra_costs.charts.axes import LINE, ZERO, Tick, W, nice_ceiling, round2, usd_short, usd_tick


@dataclass(frozen=True)
class Group:
    label: str
    cost: Decimal
    revenue: Decimal
    label_y: float
    cost_y: float
    cost_w: float
    revenue_y: float
    revenue_w: float
    cost_text: str
    revenue_text: str
    cost_text_x: float
    revenue_text_x: float
    cost_mid: float
    revenue_mid: float

    @property
    def loss(self) -> bool:
        return self.cost > self.revenue


@dataclass(frozen=True)
class CostRevenueChart:
    width: int
    height: int
    bar_h: int
    plot_top: float
    plot_w: float
    groups: list[Group]
    ticks: list[Tick]
    scale_max: Decimal

    @property
    def empty(self) -> bool:
        return not self.groups

    @property
    def scale_y(self) -> float:
        return self.plot_top - 10

    @property
    def center_x(self) -> float:
        return self.width / 2


def _bar_w(value: Decimal, scale: Decimal, plot_w: float) -> float:
    if value <= 0:
        return 0
    return max(float(value / scale) * plot_w, 1.5)


def cost_revenue_chart(
    rows: Iterable[tuple[str, Decimal | str, Decimal | str]],
) -> CostRevenueChart:
    """`rows`: (label, total monthly cost, monthly revenue) per group, in display order."""
    rows = [(label, Decimal(cost), Decimal(revenue)) for label, cost, revenue in rows]
    scale = nice_ceiling(max((max(c, r) for _, c, r in rows), default=ZERO))
    plot_w = W * 0.7  # the rest: the value labels at the bars' ends
    bar_h, gap = 20, 5
    plot_top = LINE + 4
    group_h = LINE + bar_h + gap + bar_h + 22
    groups = []
    for i, (label, cost, revenue) in enumerate(rows):
        y0 = plot_top + i * group_h
        cost_y = y0 + LINE
        revenue_y = cost_y + bar_h + gap
        cw = _bar_w(cost, scale, plot_w)
        rw = _bar_w(revenue, scale, plot_w)
        groups.append(
            Group(
                label=label,
                cost=cost,
                revenue=revenue,
                label_y=round2(y0 + LINE - 8),
                cost_y=round2(cost_y),
                cost_w=round2(cw),
                revenue_y=round2(revenue_y),
                revenue_w=round2(rw),
                cost_text=usd_short(cost),
                revenue_text=usd_short(revenue),
                cost_text_x=round2(cw + 6),
                revenue_text_x=round2(rw + 6),
                cost_mid=round2(cost_y + bar_h / 2),
                revenue_mid=round2(revenue_y + bar_h / 2),
            )
        )
    ticks = [
        Tick(round2(plot_w * k / 4), usd_tick(scale * k / 4), "start" if k == 0 else "middle")
        for k in range(5)
    ]
    return CostRevenueChart(
        width=W,
        height=int(plot_top + max(len(groups), 1) * group_h),
        bar_h=bar_h,
        plot_top=plot_top,
        plot_w=round2(plot_w),
        groups=groups,
        ticks=ticks,
        scale_max=scale,
    )
