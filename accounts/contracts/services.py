"""Writes of enterprise contracts: every change is a new version with who and why, plus an
audit row with the terms before and after. Callers that also move the credit account's
overage allowance go through `credits.services.contract_change`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.contracts.models import Contract
from accounts.contracts.selectors import contract_latest
from accounts.models import Organization, User
from accounts.services import audit_record
from config.errors import ValidationError

TERMS = ("starts_at", "ends_at", "credits_per_period", "overage_price_usd", "overage_cap", "notes")


def contract_terms(contract: Contract | None) -> dict | None:
    if contract is None:
        return None
    out = {}
    for name in TERMS:
        value = getattr(contract, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = f"{value.normalize():f}"
        out[name] = value
    return out


def _non_negative(value, *, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0:
        raise ValidationError(
            f"{field.replace('_', ' ').capitalize()} must be a number of 0 or more.",
            errors={field: ["A number of 0 or more."]},
        )
    return amount


@transaction.atomic
def contract_set(
    *,
    organization: Organization,
    actor: User | None,
    reason: str,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    credits_per_period=None,
    overage_price_usd=None,
    overage_cap=None,
    notes: str = "",
) -> Contract:
    """A new contract version for `organization` (never an edit). Joins the caller's
    transaction (`credits.services.contract_change`, the admin's)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the contract changes.", errors={"reason": ["Required."]})
    starts_at = starts_at or timezone.now()
    if ends_at is not None and ends_at <= starts_at:
        raise ValidationError(
            "The contract must end after it starts.", errors={"ends_at": ["After the start."]}
        )
    # Lock the organization row: two concurrent changes get consecutive versions.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    previous = contract_latest(organization_id=organization.pk)
    contract = Contract.objects.create(
        organization=organization,
        version=(previous.version + 1) if previous else 1,
        starts_at=starts_at,
        ends_at=ends_at,
        credits_per_period=_non_negative(credits_per_period, field="credits_per_period"),
        overage_price_usd=_non_negative(overage_price_usd, field="overage_price_usd"),
        overage_cap=_non_negative(overage_cap, field="overage_cap"),
        notes=(notes or "").strip(),
        reason=reason,
        created_by=actor if actor is not None and actor.is_authenticated else None,
    )
    audit_record(
        action="contract.set",
        organization=organization,
        actor=actor,
        target=contract,
        data={
            "version": contract.version,
            "before": contract_terms(previous),
            "after": contract_terms(contract),
            "reason": reason,
        },
    )
    return contract
