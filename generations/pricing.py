"""Credit prices from unit costs (spec §3, "Credit price derivation").

    suggested_credits(model) = max(min_credits,
        ceil_to_step(cost_per_generation_usd / (1 − target_margin) / credit_value_usd))

`cost_per_generation_usd` is the model's fully loaded cost per succeeded generation (idle
capacity, external cost and pipeline stages included) from
`infra_costs.allocation.unit_cost_report` for a period, as the report states it (6 decimal
places); `ceil_to_step` rounds *up* to a multiple of `step`. The math is exact (fractions): no
float ever touches a price.

The policy (`PricingPolicy`: credit value, target margin, minimum, step) is edited in the admin.
Applying a suggestion is a new price version through `services.rate_set` (who, when, why; audit
event); nothing here edits a rate. `price_apply` is idempotent: a model already at its
suggested price gets no new version.

Used by `manage.py suggest_prices [--apply]` and the staff pricing page
(`generations.staff_views`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone as dj_timezone

from accounts.models import User
from config.errors import ValidationError
from credits.money import CREDIT_QUANTUM
from generations import selectors, services
from generations.models import AIModel, CreditRate, PricingPolicy
from infra_costs.allocation import unit_cost_report

DEFAULT_DAYS = 30
USD_Q = Decimal("0.000001")
MARGIN_Q = Decimal("0.000001")
REASON_MAX = 255
UNIT_RATE_Q = Decimal("0.000001")


# --- The formula ---------------------------------------------------------------------------------


def ceil_to_step(value: Decimal | Fraction, step: Decimal) -> Decimal:
    """The smallest multiple of `step` that is ≥ `value` (exact; `step` > 0)."""
    if step <= 0:
        raise ValueError("step must be positive")
    n = math.ceil(Fraction(value) / Fraction(step))
    return (Decimal(n) * Decimal(step)).quantize(CREDIT_QUANTUM)


def suggested_credits(cost_per_generation_usd: Decimal | None, policy: PricingPolicy):
    """The policy's price in credits for a cost per generation (None without a cost: a model
    with no succeeded generation in the period has no suggestion)."""
    if cost_per_generation_usd is None:
        return None
    raw = (
        Fraction(cost_per_generation_usd)
        / (1 - Fraction(policy.target_margin))
        / Fraction(policy.credit_value_usd)
    )
    minimum = Decimal(policy.min_credits).quantize(CREDIT_QUANTUM)
    return max(minimum, ceil_to_step(raw, Decimal(policy.step)))


def margin_at(credits: Decimal | None, cost_usd: Decimal | None, credit_value_usd: Decimal):
    """Gross margin of selling one generation at `credits` when it costs `cost_usd`:
    (revenue − cost) / revenue, 6 decimal places (negative: sold below cost)."""
    if credits is None or cost_usd is None or credits <= 0:
        return None
    revenue = Fraction(credits) * Fraction(credit_value_usd)
    exact = (revenue - Fraction(cost_usd)) / revenue
    return _q(Decimal(exact.numerator) / Decimal(exact.denominator), MARGIN_Q)


def _q(value: Decimal, quantum: Decimal) -> Decimal:
    out = value.quantize(quantum, rounding=ROUND_HALF_UP)
    return out if out else abs(out)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# --- Suggestions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceSuggestion:
    """One model's row: its unit costs in the period, its price now and the policy's price."""

    model: str  # slug
    name: str
    ai_model: AIModel | None  # None: jobs of a model the catalog does not know
    pool: str | None
    is_active: bool
    generations: int
    failed: int
    cost_per_generation_usd: Decimal | None  # fully loaded (idle, external, stages included)
    active_cost_per_generation_usd: Decimal | None  # running time only (+ external, stages)
    current_rate: CreditRate | None
    suggested_credits: Decimal | None
    credit_value_usd: Decimal
    target_margin: Decimal
    # Priced per unit (a price table): the cost unit and its fully loaded cost in the period.
    unit: str | None = None
    cost_per_unit_usd: Decimal | None = None

    @property
    def suggested_credits_per_unit(self) -> Decimal | None:
        """The policy's price per unit (for the price table's rate of its cost unit): cost per
        unit / (1 − margin) / credit value, rounded up to 6 places (a table's rate precision)."""
        if self.cost_per_unit_usd is None:
            return None
        raw = (
            Fraction(self.cost_per_unit_usd)
            / (1 - Fraction(self.target_margin))
            / Fraction(self.credit_value_usd)
        )
        return Decimal(math.ceil(raw / Fraction(UNIT_RATE_Q))) * UNIT_RATE_Q

    @property
    def current_credits(self) -> Decimal | None:
        return self.current_rate.credits if self.current_rate is not None else None

    @property
    def current_price_usd(self) -> Decimal | None:
        if self.current_credits is None:
            return None
        return _q(self.current_credits * self.credit_value_usd, USD_Q)

    @property
    def suggested_price_usd(self) -> Decimal | None:
        if self.suggested_credits is None:
            return None
        return _q(self.suggested_credits * self.credit_value_usd, USD_Q)

    @property
    def margin_at_current_price(self) -> Decimal | None:
        return margin_at(self.current_credits, self.cost_per_generation_usd, self.credit_value_usd)

    @property
    def margin_at_suggested_price(self) -> Decimal | None:
        return margin_at(
            self.suggested_credits, self.cost_per_generation_usd, self.credit_value_usd
        )

    @property
    def below_cost(self) -> bool:
        """Sold for less than a generation costs, fully loaded (idle capacity included)."""
        if self.current_credits is None or self.cost_per_generation_usd is None:
            return False
        return self.current_credits * self.credit_value_usd < self.cost_per_generation_usd

    @property
    def below_active_cost(self) -> bool:
        """Sold for less than even the GPU time of the generation itself."""
        if self.current_credits is None or self.active_cost_per_generation_usd is None:
            return False
        return self.current_credits * self.credit_value_usd < self.active_cost_per_generation_usd

    @property
    def below_target_margin(self) -> bool:
        margin = self.margin_at_current_price
        return margin is not None and margin < self.target_margin

    @property
    def change_credits(self) -> Decimal | None:
        if self.suggested_credits is None or self.current_credits is None:
            return None
        return self.suggested_credits - self.current_credits

    @property
    def differs(self) -> bool:
        """There is a suggestion and it is not the current price."""
        return self.suggested_credits is not None and self.suggested_credits != (
            self.current_credits
        )

    @property
    def applicable(self) -> bool:
        """A flat price to apply (a model priced per unit changes its table instead)."""
        per_unit = self.unit is not None or bool(
            self.current_rate is not None and self.current_rate.price_table
        )
        return self.ai_model is not None and self.differs and not per_unit

    def as_dict(self) -> dict[str, Any]:
        def s(value):
            return None if value is None else f"{value:f}"

        per_unit = {}
        if self.unit is not None:
            per_unit = {
                "unit": self.unit,
                "cost_per_unit_usd": s(self.cost_per_unit_usd),
                "suggested_credits_per_unit": s(self.suggested_credits_per_unit),
            }
        return per_unit | {
            "model": self.model,
            "name": self.name,
            "pool": self.pool,
            "is_active": self.is_active,
            "in_catalog": self.ai_model is not None,
            "generations": self.generations,
            "failed": self.failed,
            "cost_per_generation_usd": s(self.cost_per_generation_usd),
            "active_cost_per_generation_usd": s(self.active_cost_per_generation_usd),
            "current_credits": s(self.current_credits),
            "current_price_usd": s(self.current_price_usd),
            "margin_at_current_price": s(self.margin_at_current_price),
            "suggested_credits": s(self.suggested_credits),
            "suggested_price_usd": s(self.suggested_price_usd),
            "margin_at_suggested_price": s(self.margin_at_suggested_price),
            "below_cost": self.below_cost,
            "below_active_cost": self.below_active_cost,
            "differs": self.differs,
        }


@dataclass(frozen=True)
class PriceSuggestions:
    policy: PricingPolicy
    start: date
    end: date
    window: str
    timezone: str
    report: dict[str, Any]
    rows: list[PriceSuggestion]

    def row(self, slug: str) -> PriceSuggestion | None:
        return next((r for r in self.rows if r.model == slug), None)

    @property
    def below_cost(self) -> list[PriceSuggestion]:
        return [r for r in self.rows if r.below_cost]

    @property
    def applicable(self) -> list[PriceSuggestion]:
        return [r for r in self.rows if r.applicable]

    def policy_dict(self) -> dict[str, str]:
        p = self.policy
        return {
            "credit_value_usd": f"{Decimal(p.credit_value_usd).quantize(USD_Q):f}",
            "target_margin": f"{Decimal(p.target_margin).quantize(MARGIN_Q):f}",
            "min_credits": f"{Decimal(p.min_credits).quantize(CREDIT_QUANTUM):f}",
            "step": f"{Decimal(p.step).quantize(CREDIT_QUANTUM):f}",
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.report["period"],
            "policy": self.policy_dict(),
            "models": [r.as_dict() for r in self.rows],
        }


def default_period(today: date | None = None) -> tuple[date, date]:
    """The last DEFAULT_DAYS full days (UTC): [today − 30, today)."""
    today = today or dj_timezone.now().astimezone(UTC).date()
    return today - timedelta(days=DEFAULT_DAYS), today


def prices_suggest(
    start: date | None = None,
    end: date | None = None,
    *,
    window: str = "day",
    timezone: str = "UTC",
    policy: PricingPolicy | None = None,
    now: datetime | None = None,
) -> PriceSuggestions:
    """Every model's suggested price from its fully loaded unit cost over [start, end)
    (default: the last 30 days). Rows: the catalog's active models, and any other model that
    ran in the period (inactive ones, and jobs of models the catalog does not know)."""
    if start is None or end is None:
        d_start, d_end = default_period()
        start, end = start or d_start, end or d_end
    policy = policy or PricingPolicy.load()
    report = unit_cost_report(start, end, window=window, idle_policy="weighted", timezone=timezone)
    by_slug = {m["model"]: m for m in report["models"]}
    catalog = {
        m.slug: m
        for m in AIModel.objects.select_related("pool").filter(
            Q(is_active=True) | Q(slug__in=list(by_slug))
        )
    }
    now = now or dj_timezone.now()
    current = _current_rates(list(catalog.values()), now)
    rows = []
    for slug in sorted(set(catalog) | set(by_slug)):
        ai_model = catalog.get(slug)
        costs = by_slug.get(slug, {})
        cost = _dec(costs.get("cost_per_generation_usd"))
        rows.append(
            PriceSuggestion(
                model=slug,
                name=ai_model.name if ai_model else slug,
                ai_model=ai_model,
                pool=ai_model.pool.slug if ai_model and ai_model.pool else None,
                is_active=bool(ai_model and ai_model.is_active),
                generations=costs.get("generations", 0),
                failed=costs.get("failed", 0),
                cost_per_generation_usd=cost,
                active_cost_per_generation_usd=_dec(costs.get("active_cost_per_generation_usd")),
                current_rate=current.get(ai_model.pk) if ai_model else None,
                suggested_credits=suggested_credits(cost, policy),
                credit_value_usd=policy.credit_value_usd,
                target_margin=policy.target_margin,
                unit=costs.get("unit"),
                cost_per_unit_usd=_dec(costs.get("cost_per_unit_usd")),
            )
        )
    rows.sort(key=lambda r: (not r.is_active, r.model))
    return PriceSuggestions(
        policy=policy,
        start=start,
        end=end,
        window=window,
        timezone=timezone,
        report=report,
        rows=rows,
    )


def _current_rates(models: list[AIModel], now: datetime) -> dict[int, CreditRate]:
    """Each model's price version in force at `now`, in one query."""
    rates = (
        CreditRate.objects.filter(model__in=models, effective_from__lte=now)
        .order_by("model_id", "-effective_from")
        .distinct("model_id")
        .select_related("set_by")
    )
    return {r.model_id: r for r in rates}


# --- Applying ------------------------------------------------------------------------------------


def default_reason(row: PriceSuggestion, suggestions: PriceSuggestions, *, prefix: str = "") -> str:
    """Why the price changes, for the price history: the period, the cost and the policy."""
    policy = suggestions.policy
    margin = (policy.target_margin * 100).normalize()
    text = (
        f"{prefix}{row.suggested_credits.normalize():f} credits from "
        f"{row.cost_per_generation_usd:f} USD/generation fully loaded "
        f"({suggestions.start:%Y-%m-%d} → {suggestions.end:%Y-%m-%d}, "
        f"{row.generations} generations), target margin {margin:f} %, "
        f"1 credit = {policy.credit_value_usd.normalize():f} USD"
    )
    if row.current_credits is not None:
        text += f"; was {row.current_credits.normalize():f}"
    return text[:REASON_MAX]


def price_apply(
    *,
    model: AIModel,
    actor: User | None,
    reason: str | None = None,
    suggestions: PriceSuggestions | None = None,
    start: date | None = None,
    end: date | None = None,
    expected: Decimal | None = None,
) -> CreditRate | None:
    """Make `model`'s suggested price (for [start, end), default the last 30 days, or from
    `suggestions` already computed) its price: a new version through `services.rate_set`,
    with `actor` (None: a command) and `reason` (default: a description of the suggestion).

    Idempotent: returns None, writing nothing, when the model is already at that price.
    `expected` is the suggestion the caller showed; if the suggestion is different now (new
    costs, another policy) nothing is written and a ValidationError says so."""
    if suggestions is None:
        suggestions = prices_suggest(start, end)
    row = suggestions.row(model.slug)
    if row is None or row.suggested_credits is None:
        raise ValidationError(
            f"{model.slug} has no succeeded generation in the period: no suggested price.",
            errors={"model": ["No unit cost in the period."]},
        )
    if expected is not None and expected != row.suggested_credits:
        raise ValidationError(
            f"The suggested price of {model.slug} is now {row.suggested_credits.normalize():f} "
            f"credits, not {expected.normalize():f}: review it and apply again.",
            errors={"expected": ["The suggestion changed."]},
        )
    if row.unit is not None or (row.current_rate is not None and row.current_rate.price_table):
        raise ValidationError(
            f"The price of {model.slug} follows the request (a price table): set its table "
            "from the suggested price per unit instead.",
            errors={"model": ["Priced per unit: edit its price table."]},
        )
    reason = (reason or "").strip() or default_reason(row, suggestions)
    with transaction.atomic():
        # One applier at a time per model: a second one sees the new price and does nothing.
        locked = AIModel.objects.select_for_update().get(pk=model.pk)
        current = selectors.rate_current(model=locked)
        if current is not None and current.credits == row.suggested_credits:
            return None
        return services.rate_set(
            model=locked, credits=row.suggested_credits, reason=reason[:REASON_MAX], actor=actor
        )
