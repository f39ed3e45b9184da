"""What an organization's contract changes in credits (docs/pricing.md, "Enterprise
contracts"): its overage cap and price when in force, and a contract change that moves the
credit account's overage allowance at once. Re-exported by `credits.services`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from accounts.contracts.models import Contract
from accounts.contracts.selectors import contract_in_force
from accounts.contracts.services import contract_set
from accounts.models import Organization, Plan
from credits import ledger
from credits.models import CreditAccount


def overage_limit_for(
    plan: Plan, *, organization_id: int | None = None, at: datetime | None = None
) -> Decimal:
    """How far below zero the balance may go: the organization's contract cap when its
    contract is in force and sets one (0 is a hard stop), else the plan's."""
    if organization_id is not None:
        contract = contract_in_force(organization_id=organization_id, at=at)
        if contract is not None and contract.overage_cap is not None:
            return contract.overage_cap
    return plan.overage_cap if plan.overage_enabled else Decimal(0)


def overage_price_for(
    plan: Plan, *, organization_id: int | None = None, at: datetime | None = None
) -> Decimal:
    """USD per overage credit: the contract's price when in force and set, else the plan's."""
    if organization_id is not None:
        contract = contract_in_force(organization_id=organization_id, at=at)
        if contract is not None and contract.overage_price_usd is not None:
            return contract.overage_price_usd
    return plan.overage_price_usd or Decimal(0)


@transaction.atomic  # like rates.rate_set: the admin saves inside its own transaction
def contract_change(*, organization: Organization, actor, reason: str, **terms) -> Contract:
    """A new contract version (`accounts.contracts.services.contract_set`: who, why, an audit
    row with before/after) and the credit account's overage allowance following it at once.
    Contract credits are granted at the next period open (`period_open`)."""
    contract = contract_set(organization=organization, actor=actor, reason=reason, **terms)
    subscription = getattr(organization, "subscription", None)
    if subscription is not None:
        account = ledger.account_get_or_create(organization=organization)
        account = CreditAccount.objects.select_for_update().get(pk=account.pk)
        ledger.account_set_overage_limit(
            account=account,
            overage_limit=overage_limit_for(subscription.plan, organization_id=organization.pk),
        )
    return contract
