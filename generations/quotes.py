"""The price of a request before it is made (`POST /api/v1/generations/quote/`, the generate
page's price display). A read: it holds nothing and writes nothing.

The request is checked exactly as a submission checks it (`services.submission`: the model,
then `params` against its schema — same errors), then priced with the version a submission
would pin now (`selectors.rate_current`) through `price_tables.price_for`: a submission made
with the same params under the same version holds exactly this many credits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.models import Organization
from config.errors import ValidationError
from generations.entitlements import entitlements_check
from generations.models import AIModel, CreditRate
from generations.price_tables import override_apply, override_for, rate_price
from generations.selectors import rate_current
from generations.services.submission import params_validate, request_model


@dataclass(frozen=True)
class Quote:
    model: AIModel
    rate: CreditRate
    credits: Decimal
    breakdown: list[dict[str, Any]]
    unit: str | None
    units: str | None
    list_credits: Decimal | None = None  # before the organization's price override
    override: str | None = None  # the override's terms ("10% off", "2 credits"), or None

    @property
    def follows_request(self) -> bool:
        return bool(self.rate.price_table)


def generation_quote(
    *, model_slug, params, organization: Organization | None = None, now: datetime | None = None
) -> Quote:
    """What `params` would cost on `model_slug` now. ValidationError exactly as a submission
    (unknown model, params against the schema), and when the model has no price yet. With
    `organization`: its plan's entitlements are checked as a submission checks them (403) and
    its price override applies (`price_tables.price_for`'s rule)."""
    now = now or timezone.now()
    model = request_model(model_slug=model_slug)
    params = params_validate(model=model, params=params)
    if organization is not None:
        entitlements_check(organization.subscription.plan, model, params)
    if model.pool_id is None:
        raise ValidationError(f"{model.name} has no GPU pool to run on.")
    rate = rate_current(model=model, now=now)
    if rate is None:
        raise ValidationError(f"{model.name} has no price yet.", errors={"model": ["No price."]})
    price = rate_price(rate, params)
    breakdown = [line.as_dict() for line in price.lines]
    if rate.price_table:
        base = Decimal(rate.price_table.get("base", 0))
        breakdown.insert(0, {"param": None, "kind": "base", "credits": f"{base.normalize():f}"})
    else:
        breakdown = [{"param": None, "kind": "flat", "credits": f"{rate.credits:f}"}]
    override = override_for(organization.pk, model.pk, now) if organization is not None else None
    return Quote(
        model=model,
        rate=rate,
        credits=override_apply(price.credits, override),
        list_credits=price.credits,
        override=override.terms if override is not None else None,
        breakdown=breakdown,
        unit=price.unit,
        units=None if price.units is None else f"{price.units.normalize():f}",
    )
