"""Prices: a model's price changes by a new version (never an edit), with who, when and why."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from credits.money import parse_credits
from generations.models import AIModel, CreditRate
from generations.selectors import rate_current


@transaction.atomic
def rate_set(
    *,
    model: AIModel,
    credits,
    reason: str,
    actor: User | None,
    effective_from: datetime | None = None,
) -> CreditRate:
    """A new price version (never an edit): who, when and why are kept."""
    amount = parse_credits(credits, field="credits")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the price changes.", errors={"reason": ["Required."]})
    effective_from = effective_from or timezone.now()
    previous = rate_current(model=model, now=effective_from)
    rate = CreditRate.objects.create(
        model=model, credits=amount, effective_from=effective_from, set_by=actor, reason=reason
    )
    audit_record(
        action="credit_rate.set",
        actor=actor,
        target=rate,
        data={
            "model": model.slug,
            "from": str(previous.credits) if previous else None,
            "to": str(rate.credits),
            "effective_from": effective_from.isoformat(),
            "reason": reason,
        },
    )
    return rate
