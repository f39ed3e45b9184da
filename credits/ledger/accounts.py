"""Credit accounts: one per organization, and the overage floor below zero it may reach."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction

from accounts.models import Organization
from credits.models import CreditAccount
from credits.money import parse_credits


def account_get_or_create(*, organization: Organization) -> CreditAccount:
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return CreditAccount.objects.create(organization=organization)
    except IntegrityError:
        return CreditAccount.objects.get(organization=organization)


def account_set_overage_limit(*, account: CreditAccount, overage_limit: Decimal) -> None:
    """The floor below zero `available` may reach (the plan's overage cap; 0 = hard stop)."""
    limit = parse_credits(overage_limit, field="overage_limit", allow_zero=True)
    CreditAccount.objects.filter(pk=account.pk).update(overage_limit=limit)
    account.overage_limit = limit
