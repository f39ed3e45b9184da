"""Reads of the scenario planner: what inputs may name (models, paid plans), the measured cost
per generation of each model over a period (the unit-cost report's), saved scenarios, and the
evaluation of a scenario (inputs → outputs, nothing written)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Plan
from config.errors import NotFound
from generations.models import AIModel
from infra_costs.allocation import unit_cost_report
from planning.models import Scenario
from planning.scenarios.calculation import MEASURED, ModelCost, evaluate
from planning.scenarios.inputs import ScenarioInputs, parse_inputs

USD_Q = Decimal("0.000001")


def today() -> date:
    return timezone.localdate()


def models_known() -> dict[str, str | None]:
    """Every model slug a scenario may name (inactive ones too: plans look ahead and back)."""
    return dict.fromkeys(AIModel.objects.order_by("slug").values_list("slug", flat=True))


def models_for_form() -> list[str]:
    """Active models, for the page's mix fields."""
    return list(
        AIModel.objects.filter(is_active=True).order_by("slug").values_list("slug", flat=True)
    )


def plans_known() -> dict[str, str | None]:
    """Plan slug → None for a paid plan with a monthly price, or why it can't be in the mix."""
    out: dict[str, str | None] = {}
    for slug, price in Plan.objects.values_list("slug", "monthly_price_usd"):
        if price is None:
            out[slug] = "is priced per contract, so it has no price to plan with."
        elif price <= 0:
            out[slug] = "is free: the plan mix is the split of paying users."
        else:
            out[slug] = None
    return out


def plans_paid() -> list[Plan]:
    """Plans with a monthly price above zero, in their display order."""
    return list(Plan.objects.filter(monthly_price_usd__gt=0).order_by("sort_order", "slug"))


def plan_prices(slugs: Iterable[str]) -> dict[str, Decimal]:
    return dict(Plan.objects.filter(slug__in=list(slugs)).values_list("slug", "monthly_price_usd"))


def inputs_parse(data: Any) -> ScenarioInputs:
    """Validate inputs in their JSON form against the models and plans that exist today."""
    return parse_inputs(data, models=models_known(), plans=plans_known(), today=today())


def measured_costs(start: date, end: date) -> dict[str, ModelCost]:
    """Cost per generation of each model with succeeded generations in [start, end): the
    unit-cost report's `cost_per_generation_usd` (fully loaded + external), split into its
    external part (external cost / generations, 6 dp) and the rest (GPU)."""
    report = unit_cost_report(start, end)
    out: dict[str, ModelCost] = {}
    for m in report["models"]:
        if not m["generations"] or m["cost_per_generation_usd"] is None:
            continue
        per_generation = Decimal(m["cost_per_generation_usd"])
        external = (Decimal(m["external_cost_usd"]) / m["generations"]).quantize(
            USD_Q, rounding=ROUND_HALF_UP
        )
        external = min(external, per_generation)
        out[m["model"]] = ModelCost(
            gpu_usd=per_generation - external, external_usd=external, source=MEASURED
        )
    return out


def scenario_evaluate(
    inputs: ScenarioInputs, *, costs_cache: dict[tuple[date, date], dict] | None = None
) -> dict[str, Any]:
    """The outputs of validated inputs (`calculation.evaluate`) with today's plan prices and
    the costs measured over the inputs' period. `costs_cache` shares the measured costs
    between scenarios of one request that measure over the same period."""
    period = (inputs.costs_start, inputs.costs_end)
    if costs_cache is not None and period in costs_cache:
        measured = costs_cache[period]
    else:
        measured = measured_costs(*period)
        if costs_cache is not None:
            costs_cache[period] = measured
    return evaluate(inputs, measured=measured, plan_prices=plan_prices(inputs.plan_mix))


def scenario_list() -> QuerySet[Scenario]:
    return Scenario.objects.select_related("created_by").order_by("-created_at", "-id")


def scenario_get(*, scenario_id: int) -> Scenario:
    scenario = scenario_list().filter(pk=scenario_id).first()
    if scenario is None:
        raise NotFound("No such scenario.")
    return scenario
