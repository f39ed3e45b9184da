"""Writes of price overrides: a new version with who and why, and an audit row (before/after)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, User
from accounts.services import audit_record
from config.errors import ValidationError
from credits.money import CREDIT_QUANTUM
from generations.models import AIModel
from generations.overrides.models import PriceOverride
from generations.overrides.selectors import override_in_force


def _decimal(value, *, field: str, low: Decimal, high: Decimal | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        amount = None
    bad = amount is None or not amount.is_finite() or amount < low
    if not bad and high is not None and amount > high:
        bad = True
    if bad:
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        label = field.replace("_", " ").capitalize()
        raise ValidationError(f"{label} must be {bound}.", errors={field: [f"Must be {bound}."]})
    return amount


@transaction.atomic  # like rates.rate_set: the admin saves inside its own transaction
def price_override_set(
    *,
    organization: Organization,
    model: AIModel | None,
    actor: User | None,
    reason: str,
    credits=None,
    discount_percent=None,
    effective_from: datetime | None = None,
) -> PriceOverride:
    """A new override version for (organization, model or all models). Neither `credits` nor
    `discount_percent`: the override ends (list price from `effective_from`)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the price changes.", errors={"reason": ["Required."]})
    credits = _decimal(credits, field="credits", low=Decimal("0.001"), high=None)
    if credits is not None and credits != credits.quantize(CREDIT_QUANTUM):
        raise ValidationError(
            "Credits have at most 3 decimal places.", errors={"credits": ["At most 3 decimals."]}
        )
    discount = _decimal(
        discount_percent, field="discount_percent", low=Decimal("0.01"), high=Decimal(100)
    )
    if credits is not None and discount is not None:
        raise ValidationError(
            "Give a fixed price or a discount, not both.",
            errors={"discount_percent": ["Leave empty with a fixed price."]},
        )
    effective_from = effective_from or timezone.now()
    previous = (
        override_in_force(organization_id=organization.pk, model_id=model.pk, at=effective_from)
        if model is not None
        else None
    )
    row = PriceOverride.objects.create(
        organization=organization,
        model=model,
        credits=credits,
        discount_percent=discount,
        effective_from=effective_from,
        reason=reason,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        action="price_override.set",
        organization=organization,
        actor=actor,
        target=row,
        data={
            "model": model.slug if model is not None else None,
            "before": previous.terms if previous is not None else "list price",
            "after": row.terms,
            "effective_from": effective_from.isoformat(),
            "reason": reason,
        },
    )
    return row
