"""The margins exports (per organization, plan and model), registered in `config.exports`
when the app loads (`PlanningConfig.ready`) and served by the staff exports API and page
(`operations`). The figures are `planning.margins.margins_report`'s, 6-dp as on its CSVs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from config.exports import BOOL, CREDITS, DEC, INT, STR, Dataset, ExportQuery, register
from infra_costs.allocation.assembly import q6
from infra_costs.periods import make_period
from planning import margins as m

_FIGURES = (
    ("organizations", INT),
    ("generations", INT),
    ("credits_captured", CREDITS),
    ("credit_revenue_usd", DEC),
    ("subscription_revenue_usd", DEC),
    ("revenue_usd", DEC),
    ("gpu_cost_usd", DEC),
    ("other_cost_usd", DEC),
    ("cost_usd", DEC),
    ("margin_usd", DEC),
    ("margin_fraction", DEC),
)
ORGANIZATIONS = (("organization", STR), ("name", STR), ("plan", STR), *_FIGURES)
PLANS = (("plan", STR), *_FIGURES)
MODELS = (
    ("model", STR),
    ("generations", INT),
    ("price_credits", CREDITS),
    ("price_usd", DEC),
    ("cost_per_generation_usd", DEC),
    ("margin_per_generation_usd", DEC),
    ("margin_fraction", DEC),
    ("fully_loaded_cost_usd", DEC),
    ("below_cost", BOOL),
)


def _q6(value: Decimal | None) -> Decimal | None:
    return None if value is None else q6(value)


def _figures(r: m.MarginRow) -> tuple:
    return (
        r.organizations,
        r.generations,
        r.credits_captured,
        _q6(r.credit_revenue),
        _q6(r.subscription_revenue),
        _q6(r.revenue),
        _q6(r.gpu_cost),
        _q6(r.other_cost),
        _q6(r.cost),
        _q6(r.margin),
        _q6(r.margin_fraction),
    )


def _report(q: ExportQuery) -> m.MarginReport:
    make_period(q.start, q.end, window="day", timezone=q.timezone)  # 400 before streaming
    return m.margins_report(q.start, q.end, timezone=q.timezone)


def _organization_rows(q: ExportQuery) -> Iterator[tuple]:
    report = _report(q)
    return iter([(r.key, r.name, r.plan, *_figures(r)) for r in report.organizations])


def _plan_rows(q: ExportQuery) -> Iterator[tuple]:
    return iter([(r.key, *_figures(r)) for r in _report(q).plans])


def _model_rows(q: ExportQuery) -> Iterator[tuple]:
    return iter(
        [
            (
                x.model,
                x.generations,
                x.price_credits,
                _q6(x.price_usd),
                _q6(x.cost_per_generation),
                _q6(x.margin_per_generation),
                _q6(x.margin_fraction),
                _q6(x.fully_loaded_cost),
                x.below_cost,
            )
            for x in _report(q).models
        ]
    )


register(
    Dataset(
        "margins-organizations",
        "Margins per organization",
        "Revenue, cost and margin per organization, least profitable first.",
        ORGANIZATIONS,
        _organization_rows,
        order=40,
    ),
    Dataset(
        "margins-plans",
        "Margins per plan",
        "The organizations' margins summed by their current plan.",
        PLANS,
        _plan_rows,
        order=41,
    ),
    Dataset(
        "margins-models",
        "Margins per model",
        "Price of a generation against its fully loaded cost, below cost first.",
        MODELS,
        _model_rows,
        order=42,
    ),
)
