"""The scenario planner's arithmetic: inputs + cost per generation per model + plan prices →
monthly cost, revenue, gross margin, break-even and a sensitivity table. Pure functions over
Decimal (no database, no clock): exact until the result is written out, where USD amounts are
rounded half-up to 6 decimal places, counts of generations and users to 3, fractions to 6.

Per month, with U = MAU, g = generations per user, s_m = share of model m, h = cache hit
rate, c = conversion to paid, p_k = share of plan k among paid users, B = baseline:

    generations_m      = U · g · s_m
    gpu_generations_m  = generations_m · (1 − h)          (a cached generation costs nothing)
    gpu_cost           = Σ_m gpu_generations_m · gpu_cost_per_generation_m
    external_cost      = Σ_m gpu_generations_m · external_cost_per_generation_m
    paid_users         = U · c ;  revenue_k = paid_users · p_k · price_k ; revenue = Σ_k revenue_k
    total_cost         = gpu_cost + external_cost + B
    gross_margin       = revenue − total_cost ;  gross_margin_fraction = gross_margin / revenue

Break-even, at the same conversion, usage and mixes (so that cost and revenue both grow with
MAU): revenue per MAU r = c · Σ_k p_k · price_k, variable cost per MAU v = g · Σ_m s_m · (1 − h)
· cost_per_generation_m; break-even MAU = B / (r − v), break-even paid users = that · c, each
rounded up to a whole user. When r ≤ v each new user loses money: no break-even (None).

Sensitivity: the same evaluation with one input moved by −20 % and +20 % (relative): the
conversion (capped at 100 %), the generations per user, and the GPU price (GPU cost per
generation; external costs do not move).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from planning.scenarios.inputs import HUNDRED, ScenarioInputs

ZERO = Decimal(0)
ONE = Decimal(1)
USD_Q = Decimal("0.000001")
COUNT_Q = Decimal("0.001")
FRACTION_Q = Decimal("0.000001")
PRECISION = 60  # digits: MAU ≤ 1e9 × 1e5 generations × $1,000 stays exact with room to spare

SENSITIVITY_CHANGES = (Decimal("-0.2"), Decimal("0.2"))
SENSITIVITY_VARIABLES = (
    ("conversion", "Conversion to paid"),
    ("generations_per_user", "Generations per user"),
    ("gpu_price", "GPU price"),
)

MEASURED = "measured"
OVERRIDE = "override"
MISSING = "missing"


@dataclass(frozen=True)
class ModelCost:
    """Cost of one generation of a model, in USD: GPU (fully loaded, idle share included) and
    external (third-party API, licences)."""

    gpu_usd: Decimal
    external_usd: Decimal = ZERO
    source: str = MEASURED

    @property
    def total_usd(self) -> Decimal:
        return self.gpu_usd + self.external_usd


def resolve_costs(
    inputs: ScenarioInputs, measured: Mapping[str, ModelCost]
) -> tuple[dict[str, ModelCost | None], list[dict[str, str]]]:
    """The cost per generation of each model of the mix: its override, else its measured cost,
    else None with a warning (its generations are then counted at no cost, so the total is
    too low until an override is given)."""
    costs: dict[str, ModelCost | None] = {}
    warnings: list[dict[str, str]] = []
    for slug in inputs.model_mix:
        if slug in inputs.cost_overrides:
            costs[slug] = ModelCost(gpu_usd=inputs.cost_overrides[slug], source=OVERRIDE)
        elif slug in measured:
            costs[slug] = measured[slug]
        else:
            costs[slug] = None
            warnings.append(
                {
                    "code": "no_measured_cost",
                    "model": slug,
                    "message": (
                        f"{slug} had no succeeded generation from {inputs.costs_start} to "
                        f"{inputs.costs_end}: its cost per generation is unknown and counted as "
                        "zero. Give it a cost override, or measure over another period."
                    ),
                }
            )
    return costs, warnings


@dataclass(frozen=True)
class _Figures:
    model_lines: list[dict[str, Any]]
    plan_lines: list[dict[str, Any]]
    generations: Decimal
    gpu_generations: Decimal
    gpu_cost: Decimal
    external_cost: Decimal
    baseline: Decimal
    paid_users: Decimal
    revenue: Decimal
    revenue_per_mau: Decimal
    variable_cost_per_mau: Decimal
    revenue_per_paid_user: Decimal

    @property
    def total_cost(self) -> Decimal:
        return self.gpu_cost + self.external_cost + self.baseline

    @property
    def gross_margin(self) -> Decimal:
        return self.revenue - self.total_cost

    @property
    def gross_margin_fraction(self) -> Decimal | None:
        return None if not self.revenue else self.gross_margin / self.revenue

    @property
    def break_even_mau(self) -> Decimal | None:
        """Exact (not rounded up) MAU where revenue covers cost; None when never."""
        margin_per_mau = self.revenue_per_mau - self.variable_cost_per_mau
        if margin_per_mau <= 0:
            return None
        return self.baseline / margin_per_mau


def _figures(
    inputs: ScenarioInputs,
    costs: Mapping[str, ModelCost | None],
    plan_prices: Mapping[str, Decimal],
    *,
    conversion_pct: Decimal,
    generations_per_user: Decimal,
    gpu_factor: Decimal,
) -> _Figures:
    mau = Decimal(inputs.mau)
    uncached = ONE - inputs.cache_hit_pct / HUNDRED
    conversion = conversion_pct / HUNDRED
    model_lines = []
    gpu_cost = external_cost = generations = gpu_generations = variable_per_mau = ZERO
    for slug, share_pct in inputs.model_mix.items():
        share = share_pct / HUNDRED
        cost = costs.get(slug)
        gpu_per = cost.gpu_usd * gpu_factor if cost is not None else ZERO
        ext_per = cost.external_usd if cost is not None else ZERO
        gens = mau * generations_per_user * share
        on_gpu = gens * uncached
        line_gpu = on_gpu * gpu_per
        line_ext = on_gpu * ext_per
        generations += gens
        gpu_generations += on_gpu
        gpu_cost += line_gpu
        external_cost += line_ext
        variable_per_mau += generations_per_user * share * uncached * (gpu_per + ext_per)
        model_lines.append(
            {
                "model": slug,
                "share_pct": share_pct,
                "generations": gens,
                "cached_generations": gens - on_gpu,
                "gpu_generations": on_gpu,
                "cost_per_generation_usd": None if cost is None else gpu_per + ext_per,
                "cost_source": MISSING if cost is None else cost.source,
                "gpu_cost_usd": line_gpu,
                "external_cost_usd": line_ext,
            }
        )
    paid = mau * conversion
    plan_lines = []
    revenue = per_paid_user = ZERO
    for slug, share_pct in inputs.plan_mix.items():
        share = share_pct / HUNDRED
        price = plan_prices[slug]
        users = paid * share
        line = users * price
        revenue += line
        per_paid_user += share * price
        plan_lines.append(
            {
                "plan": slug,
                "share_pct": share_pct,
                "paid_users": users,
                "monthly_price_usd": price,
                "revenue_usd": line,
            }
        )
    return _Figures(
        model_lines=model_lines,
        plan_lines=plan_lines,
        generations=generations,
        gpu_generations=gpu_generations,
        gpu_cost=gpu_cost,
        external_cost=external_cost,
        baseline=sum((b.monthly_usd for b in inputs.baseline), ZERO),
        paid_users=paid,
        revenue=revenue,
        revenue_per_mau=conversion * per_paid_user,
        variable_cost_per_mau=variable_per_mau,
        revenue_per_paid_user=per_paid_user,
    )


# --- Writing out -------------------------------------------------------------------------------


def _q(value: Decimal | None, quantum: Decimal) -> str | None:
    if value is None:
        return None
    return format(value.quantize(quantum, rounding=ROUND_HALF_UP), "f")


def _usd(value: Decimal | None) -> str | None:
    return _q(value, USD_Q)


def _count(value: Decimal | None) -> str | None:
    return _q(value, COUNT_Q)


def _ceil(value: Decimal | None) -> int | None:
    if value is None:
        return None
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _break_even(f: _Figures, conversion_pct: Decimal) -> tuple[int | None, int | None]:
    mau = f.break_even_mau
    if mau is None:
        return None, None
    return _ceil(mau), _ceil(mau * conversion_pct / HUNDRED)


def _summary(f: _Figures, conversion_pct: Decimal) -> dict[str, Any]:
    be_mau, be_paid = _break_even(f, conversion_pct)
    return {
        "gpu_cost_usd": _usd(f.gpu_cost),
        "total_cost_usd": _usd(f.total_cost),
        "revenue_usd": _usd(f.revenue),
        "gross_margin_usd": _usd(f.gross_margin),
        "gross_margin_fraction": _q(f.gross_margin_fraction, FRACTION_Q),
        "break_even_mau": be_mau,
        "break_even_paid_users": be_paid,
    }


def evaluate(
    inputs: ScenarioInputs,
    *,
    measured: Mapping[str, ModelCost],
    plan_prices: Mapping[str, Decimal],
) -> dict[str, Any]:
    """The scenario's outputs (JSON-ready: decimals as strings). `measured` holds the cost per
    generation of the models that have one; `plan_prices` the monthly USD price of every plan
    of the plan mix."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        costs, warnings = resolve_costs(inputs, measured)
        base = _figures(
            inputs,
            costs,
            plan_prices,
            conversion_pct=inputs.conversion_pct,
            generations_per_user=inputs.generations_per_user,
            gpu_factor=ONE,
        )
        be_mau, be_paid = _break_even(base, inputs.conversion_pct)
        sensitivity = []
        for variable, label in SENSITIVITY_VARIABLES:
            for change in SENSITIVITY_CHANGES:
                factor = ONE + change
                conversion = inputs.conversion_pct
                per_user = inputs.generations_per_user
                gpu = ONE
                if variable == "conversion":
                    conversion = min(conversion * factor, HUNDRED)
                elif variable == "generations_per_user":
                    per_user = per_user * factor
                else:
                    gpu = factor
                f = _figures(
                    inputs,
                    costs,
                    plan_prices,
                    conversion_pct=conversion,
                    generations_per_user=per_user,
                    gpu_factor=gpu,
                )
                sensitivity.append(
                    {
                        "variable": variable,
                        "label": label,
                        "change": format(change, "f"),
                        **_summary(f, conversion),
                    }
                )
        return {
            "inputs": inputs.as_json(),
            "costs_period": {
                "start": inputs.costs_start.isoformat(),
                "end": inputs.costs_end.isoformat(),
            },
            "models": [
                {
                    **line,
                    "share_pct": format(line["share_pct"], "f"),
                    "generations": _count(line["generations"]),
                    "cached_generations": _count(line["cached_generations"]),
                    "gpu_generations": _count(line["gpu_generations"]),
                    "cost_per_generation_usd": _usd(line["cost_per_generation_usd"]),
                    "gpu_cost_usd": _usd(line["gpu_cost_usd"]),
                    "external_cost_usd": _usd(line["external_cost_usd"]),
                }
                for line in base.model_lines
            ],
            "plans": [
                {
                    **line,
                    "share_pct": format(line["share_pct"], "f"),
                    "paid_users": _count(line["paid_users"]),
                    "monthly_price_usd": _usd(line["monthly_price_usd"]),
                    "revenue_usd": _usd(line["revenue_usd"]),
                }
                for line in base.plan_lines
            ],
            "baseline": [
                {"name": b.name, "monthly_usd": _usd(b.monthly_usd)} for b in inputs.baseline
            ],
            "totals": {
                "generations": _count(base.generations),
                "gpu_generations": _count(base.gpu_generations),
                "gpu_cost_usd": _usd(base.gpu_cost),
                "external_cost_usd": _usd(base.external_cost),
                "baseline_usd": _usd(base.baseline),
                "total_cost_usd": _usd(base.total_cost),
                "paid_users": _count(base.paid_users),
                "revenue_usd": _usd(base.revenue),
                "gross_margin_usd": _usd(base.gross_margin),
                "gross_margin_fraction": _q(base.gross_margin_fraction, FRACTION_Q),
                "revenue_per_paid_user_usd": _usd(base.revenue_per_paid_user),
                "revenue_per_mau_usd": _usd(base.revenue_per_mau),
                "variable_cost_per_mau_usd": _usd(base.variable_cost_per_mau),
                "break_even_mau": be_mau,
                "break_even_paid_users": be_paid,
            },
            "sensitivity": sensitivity,
            "warnings": warnings,
        }
