"""Geometry of the pool economics charts (inline SVG, server-side, like the cost report's:
`infra_costs.charts.axes` gives the viewBox width, scales, ticks and short labels). Numbers in
charts are rounded for reading; the tables next to them are exact."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from infra_costs.charts.axes import (
    LINE,
    ZERO,
    Tick,
    W,
    nice_ceiling,
    pct,
    round2,
    usd_short,
    usd_tick,
)
from planning.pool_economics import PoolEconomics, RentVsBuy, cost_per_generation

HEIGHT = 340
TOP = 2 * LINE
BOTTOM = HEIGHT - LINE - 8
PLOT_H = BOTTOM - TOP
CURVE_FROM = Decimal("0.1")  # cost per generation → ∞ as utilization → 0: start the curves here
CURVE_STEP = Decimal("0.02")
SERIES_CLASSES = 5  # series-0 … series-4 in the CSS, then reused


@dataclass(frozen=True)
class Series:
    label: str
    css: str
    points: str  # "x,y x,y …" for a polyline
    end_text: str  # value at 100%


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    anchor: str
    css: str
    label_y: float = LINE - 6  # the band above the plot (the scale labels sit below it)


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class LineChart:
    kind: str
    pool: str
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    markers: list[Marker]
    dots: list[Dot]
    summary: str

    @property
    def empty(self) -> bool:
        return not self.series

    @property
    def label_y(self) -> int:
        return self.height - 8

    @property
    def plot_mid(self) -> float:
        return (self.plot_top + self.plot_bottom) / 2

    @property
    def center_x(self) -> float:
        return self.width / 2


def _x(u: Decimal, x_max: Decimal) -> float:
    return round2(float(u / x_max) * W)


def _y(v: Decimal, y_max: Decimal) -> float:
    v = min(max(v, ZERO), y_max)
    return round2(BOTTOM - float(v / y_max) * PLOT_H)


def _x_ticks(x_max: Decimal) -> list[Tick]:
    ticks = []
    for k in range(5):
        u = x_max * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        ticks.append(Tick(_x(u, x_max), pct(u), anchor))
    return ticks


def _y_ticks(y_max: Decimal, suffix: str = "") -> list[Tick]:
    return [
        Tick(round2(BOTTOM - PLOT_H * k / 2), usd_tick(y_max * k / 2) + (suffix if k == 2 else ""))
        for k in (1, 2)
    ]


def _marker(u: Decimal, x_max: Decimal, label: str, css: str) -> Marker:
    x = _x(u, x_max)
    anchor = "start" if x < W * 0.15 else "end" if x > W * 0.85 else "middle"
    return Marker(x=x, label=label, anchor=anchor, css=css)


def cost_curve_chart(econ: PoolEconomics) -> LineChart:
    """Cost per generation (USD, y) against the nodes' utilization (x, 10–100%): the pool's mix
    (bold) and each model; markers at the measured utilization and at one node's SLA limit."""
    x_max = Decimal(1)
    series: list[Series] = []
    markers: list[Marker] = []
    dots: list[Dot] = []
    if econ.ready:
        lines = [(econ.mix, "series-mix", "mix")] + [
            (m, f"series-{i % SERIES_CLASSES}", m.model) for i, m in enumerate(econ.models)
        ]
        steps = int((x_max - CURVE_FROM) / CURVE_STEP)
        levels = [CURVE_FROM + CURVE_STEP * k for k in range(steps + 1)]
        top = max(
            cost_per_generation(rate_usd=econ.rate_usd, service_s=m.mean_s, utilization=CURVE_FROM)
            for m, _, _ in lines
        )
        y_max = nice_ceiling(top)
        for st, css, label in lines:
            pts = []
            for u in levels:
                c = cost_per_generation(rate_usd=econ.rate_usd, service_s=st.mean_s, utilization=u)
                pts.append(f"{_x(u, x_max)},{_y(c, y_max)}")
            end = cost_per_generation(
                rate_usd=econ.rate_usd, service_s=st.mean_s, utilization=x_max
            )
            series.append(
                Series(label=label, css=css, points=" ".join(pts), end_text=usd_short(end))
            )
        for row in econ.rows:
            if row.measured or row.cost_per_generation_usd is None:
                continue
            dots.append(
                Dot(
                    x=_x(row.utilization, x_max),
                    y=_y(row.cost_per_generation_usd, y_max),
                    title=f"{pct(row.utilization)}: {usd_short(row.cost_per_generation_usd)} "
                    "per generation (mix)",
                )
            )
        if econ.measured_utilization is not None and econ.measured_utilization > 0:
            markers.append(
                _marker(
                    min(econ.measured_utilization, x_max),
                    x_max,
                    f"now {pct(econ.measured_utilization)}",
                    "marker-now",
                )
            )
        if econ.limit is not None and econ.limit > 0:
            markers.append(
                _marker(econ.limit, x_max, f"2nd node {pct(econ.limit)}", "marker-limit")
            )
        y_ticks = _y_ticks(y_max, "/gen")
        summary = (
            f"Mix: {usd_short(econ.rows[0].cost_per_generation_usd)} per generation at "
            f"{pct(econ.rows[0].utilization)} utilization down to "
            f"{series[0].end_text} at 100%."
        )
    else:
        y_ticks = []
        summary = "No succeeded runs or no rate: nothing to draw."
    return LineChart(
        kind="cost-curve",
        pool=econ.pool.slug,
        width=W,
        height=HEIGHT,
        plot_top=TOP,
        plot_bottom=BOTTOM,
        series=series,
        x_ticks=_x_ticks(x_max),
        y_ticks=y_ticks,
        markers=_spread(markers),
        dots=dots,
        summary=summary,
    )


def _spread(markers: list[Marker]) -> list[Marker]:
    """Two marker labels too close to read: the left one anchors at its end, the right one at
    its start, so they part."""
    if len(markers) != 2:
        return markers
    a, b = sorted(markers, key=lambda m: m.x)
    if b.x - a.x >= W * 0.3:
        return [a, b]
    left = a.anchor if a.anchor == "start" else "end"
    right = b.anchor if b.anchor == "end" else "start"
    if left == "start" or right == "end":  # at an edge: stack instead (second one lower)
        return [a, Marker(x=b.x, label=b.label, anchor=b.anchor, css=b.css, label_y=TOP - 8)]
    return [
        Marker(x=a.x, label=a.label, anchor=left, css=a.css),
        Marker(x=b.x, label=b.label, anchor=right, css=b.css),
    ]


def rent_buy_chart(econ: PoolEconomics, rb: RentVsBuy | None) -> LineChart:
    """USD per month (y) against the utilization of the owned nodes (x): renting grows with the
    node-hours needed, owning is flat; they cross at the break-even utilization."""
    series: list[Series] = []
    markers: list[Marker] = []
    dots: list[Dot] = []
    x_max = Decimal(1)
    if rb is not None:
        quarter = Decimal("0.25")
        reach = max(Decimal(1), rb.utilization)
        x_max = (reach / quarter).to_integral_value(rounding=ROUND_CEILING) * quarter
        rent_end = rb.capacity_node_hours * x_max * rb.rate_usd
        y_max = nice_ceiling(max(rent_end, rb.own_month_usd))
        series = [
            Series(
                label="rent",
                css="series-rent",
                points=f"0,{_y(ZERO, y_max)} {_x(x_max, x_max)},{_y(rent_end, y_max)}",
                end_text=usd_short(rent_end),
            ),
            Series(
                label="own",
                css="series-own",
                points=f"0,{_y(rb.own_month_usd, y_max)} {W},{_y(rb.own_month_usd, y_max)}",
                end_text=usd_short(rb.own_month_usd),
            ),
        ]
        if rb.break_even is not None and rb.break_even <= x_max:
            dots.append(
                Dot(
                    x=_x(rb.break_even, x_max),
                    y=_y(rb.own_month_usd, y_max),
                    title=f"Break-even at {pct(rb.break_even, 1)}: "
                    f"{usd_short(rb.own_month_usd)} a month either way",
                )
            )
            markers.append(
                _marker(rb.break_even, x_max, f"break-even {pct(rb.break_even)}", "marker-limit")
            )
        markers.append(_marker(rb.utilization, x_max, f"now {pct(rb.utilization)}", "marker-now"))
        y_ticks = _y_ticks(y_max, "/mo")
        summary = (
            f"Owning {usd_short(rb.own_month_usd)} a month; renting the measured hours "
            f"{usd_short(rb.rent_month_usd)}."
        )
    else:
        y_ticks = []
        summary = "No rate for this pool: nothing to compare."
    return LineChart(
        kind="rent-buy",
        pool=econ.pool.slug,
        width=W,
        height=HEIGHT,
        plot_top=TOP,
        plot_bottom=BOTTOM,
        series=series,
        x_ticks=_x_ticks(x_max),
        y_ticks=y_ticks,
        markers=_spread(markers),
        dots=dots,
        summary=summary,
    )
