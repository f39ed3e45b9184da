"""Reads for the billing page and the admin (no Stripe calls, except `invoices_recent` in
`credits.billing.checkout`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet, Sum

from accounts.models import Organization, Plan, Subscription, SubscriptionStatus
from credits.billing.catalog import packs_active, plans_purchasable
from credits.billing.models import (
    AutoTopUp,
    CreditPack,
    LowBalanceAlert,
    Purchase,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
)
from credits.models import CreditGrant, GrantSource, OverageRecord


@dataclass(frozen=True)
class BillingStatus:
    subscription: Subscription | None
    plan: Plan | None
    stripe_managed: bool  # renewed by Stripe invoices (else by the beat task / contract)
    past_due: bool  # show the "payment failed" banner
    past_due_since: datetime | None
    downgrade_at: datetime | None  # when a past-due plan falls back to free
    cancel_at_period_end: bool
    customer: StripeCustomer | None
    auto_top_up: AutoTopUp | None
    low_balance_alert: LowBalanceAlert | None


def billing_status(*, organization: Organization) -> BillingStatus:
    subscription = (
        Subscription.objects.select_related("plan").filter(organization=organization).first()
    )
    customer = StripeCustomer.objects.filter(organization=organization).first()
    past_due = subscription is not None and subscription.status == SubscriptionStatus.PAST_DUE
    since = customer.past_due_since if customer else None
    return BillingStatus(
        subscription=subscription,
        plan=subscription.plan if subscription else None,
        stripe_managed=bool(subscription and subscription.stripe_subscription_id),
        past_due=past_due,
        past_due_since=since,
        downgrade_at=(
            since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
            if past_due and since
            else None
        ),
        cancel_at_period_end=bool(subscription and subscription.cancel_at_period_end),
        customer=customer,
        auto_top_up=AutoTopUp.objects.filter(organization=organization)
        .select_related("pack")
        .first(),
        low_balance_alert=LowBalanceAlert.objects.filter(organization=organization).first(),
    )


def period_plan_credits(
    *, organization: Organization, subscription: Subscription | None
) -> Decimal:
    """Plan credits granted for the current period (its grant plus any upgrade top-up: the
    plan grants expiring with the period)."""
    if subscription is None:
        return Decimal(0)
    total = CreditGrant.objects.filter(
        account__organization=organization,
        source=GrantSource.PLAN,
        expires_at=subscription.current_period_end,
    ).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


def plans_for_sale() -> QuerySet[Plan]:
    return plans_purchasable().order_by("sort_order", "slug")


def packs_for_sale() -> QuerySet[CreditPack]:
    return packs_active()


def purchases_for(*, organization: Organization) -> QuerySet[Purchase]:
    return Purchase.objects.filter(organization=organization).select_related("pack")


def overage_records_for(*, organization: Organization) -> QuerySet[OverageRecord]:
    return OverageRecord.objects.filter(account__organization=organization)


def flagged_purchases() -> QuerySet[Purchase]:
    """Refunds that left spent credits unfunded: for staff to review."""
    return Purchase.objects.filter(flagged=True).select_related("organization", "pack")


def events_needing_attention() -> QuerySet[StripeEvent]:
    return StripeEvent.objects.filter(
        status__in=[StripeEventStatus.FAILED, StripeEventStatus.INVALID]
    )
