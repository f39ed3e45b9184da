"""Geometry of the staff cost report's charts, drawn server-side as inline SVG (like the credits
usage chart: no JavaScript, no chart library). Each builder returns plain data in a fixed
viewBox; the templates (templates/staff/partials/) only place it. Text sizes are set by CSS per
screen width (static/css/app.css, "Staff reports") so labels stay legible on a phone, on a
desktop and in print; the layouts leave room for the largest size.

Numbers shown in charts are rounded for reading; the tables next to them have the exact ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from infra_costs.selectors import HeatCell, PoolDay

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


def _r(x) -> float:
    return round(float(x), 2)


@dataclass(frozen=True)
class Tick:
    pos: float  # x or y in the viewBox
    label: str
    anchor: str = "middle"


# --- 1. Cost per generation by model: grouped horizontal bars ------------------------------------


@dataclass(frozen=True)
class ModelBars:
    model: str
    generations: int
    label_y: float
    active: Decimal
    fully: Decimal
    active_y: float
    active_w: float
    fully_y: float
    fully_w: float
    active_text: str
    fully_text: str
    active_text_x: float
    fully_text_x: float
    active_mid: float
    fully_mid: float


@dataclass(frozen=True)
class CostPerGenerationChart:
    width: int
    height: int
    bar_h: int
    plot_top: float
    plot_w: float
    rows: list[ModelBars]
    ticks: list[Tick]
    scale_max: Decimal
    omitted: list[str]  # models without succeeded generations (no cost per generation)

    @property
    def empty(self) -> bool:
        return not self.rows

    @property
    def most_expensive(self) -> ModelBars | None:
        return max(self.rows, key=lambda r: r.fully, default=None)

    @property
    def center_x(self) -> float:
        return self.width / 2

    @property
    def center_y(self) -> float:
        return self.plot_top + (self.height - self.plot_top) / 2

    @property
    def scale_y(self) -> float:
        return self.plot_top - 10


def cost_per_generation_chart(models: list[dict]) -> CostPerGenerationChart:
    """One group per model with a cost per generation: its name, then the active cost per
    generation (GPU time only) and the fully loaded one (idle share included), on a common
    USD scale. Most expensive first."""
    rows_in = [m for m in models if m.get("cost_per_generation_usd") is not None]
    omitted = [m["model"] for m in models if m.get("cost_per_generation_usd") is None]
    rows_in.sort(key=lambda m: (-Decimal(m["cost_per_generation_usd"]), m["model"]))
    top = max(
        (
            max(Decimal(m["cost_per_generation_usd"]), Decimal(m["active_cost_per_generation_usd"]))
            for m in rows_in
        ),
        default=ZERO,
    )
    scale = nice_ceiling(top)
    plot_w = W * 0.66  # the rest: room for the value labels at the bars' ends
    bar_h, gap = 20, 5
    plot_top = LINE + 4  # scale labels above
    group_h = LINE + bar_h + gap + bar_h + 22
    rows = []
    for i, m in enumerate(rows_in):
        y0 = plot_top + i * group_h
        active = Decimal(m["active_cost_per_generation_usd"])
        fully = Decimal(m["cost_per_generation_usd"])
        aw = float(active / scale) * plot_w
        fw = float(fully / scale) * plot_w
        aw = max(aw, 1.5) if active > 0 else 0
        fw = max(fw, 1.5) if fully > 0 else 0
        active_y = y0 + LINE
        fully_y = active_y + bar_h + gap
        rows.append(
            ModelBars(
                model=m["model"],
                generations=m["generations"],
                label_y=_r(y0 + LINE - 8),
                active=active,
                fully=fully,
                active_y=_r(active_y),
                active_w=_r(aw),
                fully_y=_r(fully_y),
                fully_w=_r(fw),
                active_text=usd_short(active),
                fully_text=usd_short(fully),
                active_text_x=_r(aw + 6),
                fully_text_x=_r(fw + 6),
                active_mid=_r(active_y + bar_h / 2),
                fully_mid=_r(fully_y + bar_h / 2),
            )
        )
    height = plot_top + max(len(rows), 1) * group_h
    ticks = [
        Tick(_r(plot_w * k / 4), usd_tick(scale * k / 4), "start" if k == 0 else "middle")
        for k in range(5)
    ]
    return CostPerGenerationChart(
        width=W,
        height=int(height),
        bar_h=bar_h,
        plot_top=plot_top,
        plot_w=_r(plot_w),
        rows=rows,
        ticks=ticks,
        scale_max=scale,
        omitted=omitted,
    )


# --- 2. Daily cost vs busy hours per pool: bars + lines -------------------------------------------


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
                x=_r(i * slot + (slot - bar_w) / 2),
                y=_r(plot_bottom - h),
                w=_r(bar_w),
                h=_r(h),
                slot_x=_r(i * slot),
                cx=_r(cx),
                busy_y=_r(plot_bottom - float(d.busy_hours / hours_max) * plot_h),
                up_y=_r(plot_bottom - float(d.uptime_hours / hours_max) * plot_h),
                label=label,
                label_x=_r(0 if first_or_last == "start" else W if first_or_last == "end" else cx),
                anchor=first_or_last or "middle",
                minor=minor,
            )
        )
    cost_ticks = [
        Tick(_r(plot_bottom - plot_h * k / 2), usd_tick(cost_max * k / 2), "start") for k in (1, 2)
    ]
    hours_ticks = [
        Tick(_r(plot_bottom - plot_h * k / 2), hours_short(hours_max * k / 2), "end")
        for k in (1, 2)
    ]
    return DailyChart(
        pool=pool,
        width=W,
        height=height,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        slot=_r(slot),
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


# --- 3. Idle heatmap: hour of day × day -----------------------------------------------------------

# Idle fraction bins, light to dark (ColorBrewer OrRd: sequential, prints in grey as a ramp,
# safe for the common colour-vision deficiencies).
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
        return _r(self.cell_w * 24)

    @property
    def grid_h(self) -> float:
        return _r(self.cell_h * len(self.rows))

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
                    x=_r(left + c.hour * cell_w),
                    y=_r(y),
                    css=heat_class(c.idle_fraction),
                    title=title,
                )
            )
        rows.append(
            HeatRow(
                day=day,
                y=_r(y),
                label=(
                    None
                    if r % every
                    else f"wk {day.day} {day:%b}"
                    if weekly
                    else f"{day:%a} {day.day}"
                ),
                label_y=_r(y + cell_h / 2),
                minor=r % every_phone != 0,
                idle_fraction=None if not up else idle / up,
                uptime_hours=up,
                idle_hours=idle,
            )
        )
    hour_ticks = [Tick(_r(left + h * cell_w + cell_w / 2), f"{h:02d}") for h in range(0, 24, 3)]
    height = top + max(n, 1) * cell_h + 4
    return Heatmap(
        pool=pool,
        width=W,
        height=int(height),
        left=left,
        top=top,
        cell_w=_r(cell_w),
        cell_h=cell_h,
        rects=rects,
        rows=rows,
        hour_ticks=hour_ticks,
        hour_totals=[HeatCell(h, hour_up[h], hour_idle[h]) for h in range(24)],
        weekly=weekly,
        legend=[(css, label) for _, css, label in HEAT_BINS],
        with_titles=with_titles,
    )


# --- 4. Idle fraction per pool: horizontal bars ---------------------------------------------------


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
                label_y=_r(y0 + LINE - 8),
                y=_r(y0 + LINE),
                w=_r(w),
                text=pct(frac, 1) + " idle" if frac is not None else "no uptime",
                text_x=_r(w - 8 if inside else w + 8),
                text_inside=inside,
                mid=_r(y0 + LINE + bar_h / 2),
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
        ticks=[Tick(_r(plot_w * k / 4), f"{25 * k}%", ANCHORS_5[k]) for k in range(5)],
        total=total,
        total_x=None if total is None else _r(float(total) * plot_w),
    )
