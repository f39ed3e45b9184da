"""Cost per generation by model: grouped horizontal bars (active vs fully loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from infra_costs.charts.axes import (
    LINE,
    ZERO,
    Tick,
    W,
    nice_ceiling,
    round2,
    usd_short,
    usd_tick,
)


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
                label_y=round2(y0 + LINE - 8),
                active=active,
                fully=fully,
                active_y=round2(active_y),
                active_w=round2(aw),
                fully_y=round2(fully_y),
                fully_w=round2(fw),
                active_text=usd_short(active),
                fully_text=usd_short(fully),
                active_text_x=round2(aw + 6),
                fully_text_x=round2(fw + 6),
                active_mid=round2(active_y + bar_h / 2),
                fully_mid=round2(fully_y + bar_h / 2),
            )
        )
    height = plot_top + max(len(rows), 1) * group_h
    ticks = [
        Tick(round2(plot_w * k / 4), usd_tick(scale * k / 4), "start" if k == 0 else "middle")
        for k in range(5)
    ]
    return CostPerGenerationChart(
        width=W,
        height=int(height),
        bar_h=bar_h,
        plot_top=plot_top,
        plot_w=round2(plot_w),
        rows=rows,
        ticks=ticks,
        scale_max=scale,
        omitted=omitted,
    )
