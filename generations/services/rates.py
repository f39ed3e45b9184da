"""Prices: a model's price changes by a new version (never an edit), with who, when and why.

A version is flat (`credits` per generation) or carries a price table (`price_table`: a price
that follows the request, see `generations.price_tables`); then its `credits` is the table's
reference price (every param at its default), computed here.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from credits.money import parse_credits
from generations.models import AIModel, CreditRate
from generations.price_tables import price_table_validate, schema_defaults, table_price
from generations.selectors import rate_current


@transaction.atomic
def rate_set(
    *,
    model: AIModel,
    credits=None,
    reason: str,
    actor: User | None,
    effective_from: datetime | None = None,
    price_table: dict | None = None,
) -> CreditRate:
    """A new price version (never an edit): who, when and why are kept. With `price_table`
    (validated against the model's params schema) the price follows the request and `credits`
    is left out: it is the table's reference price."""
    if price_table:
        price_table_validate(price_table, params_schema=model.params_schema)
        amount = table_price(price_table, {}, defaults=schema_defaults(model.params_schema)).credits
    else:
        price_table = None
        amount = parse_credits(credits, field="credits")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the price changes.", errors={"reason": ["Required."]})
    effective_from = effective_from or timezone.now()
    previous = rate_current(model=model, now=effective_from)
    rate = CreditRate.objects.create(
        model=model,
        credits=amount,
        price_table=price_table,
        effective_from=effective_from,
        set_by=actor,
        reason=reason,
    )
    audit_record(
        action="credit_rate.set",
        actor=actor,
        target=rate,
        data={
            "model": model.slug,
            "from": str(previous.credits) if previous else None,
            "to": str(rate.credits),
            "price_table": price_table,
            "effective_from": effective_from.isoformat(),
            "reason": reason,
        },
    )
    return rate
