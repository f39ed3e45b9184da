"""Subscription periods (their grants, the overage close) and the credits app's batch jobs
(expiring grants, stale holds); `account_for`. Part of `credits.services`."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.contracts.selectors import contract_in_force
from accounts.models import Organization, Plan, Subscription
from accounts.services import audit_record, subscription_advance_period
from config.errors import (
    ValidationError,
)
from credits import ledger, selectors
from credits.contract_terms import (
    overage_limit_for,
    overage_price_for,
)
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    GrantSource,
    HoldStatus,
    OverageRecord,
)
from credits.money import credits_to_usd


def account_for(*, organization: Organization) -> CreditAccount:
    """The organization's credit account (created on first use)."""
    return ledger.account_get_or_create(organization=organization)


# --- Periods ----------------------------------------------------------------------------------


def _period_grant_key(subscription: Subscription) -> str:
    return f"plan:{subscription.pk}:{subscription.current_period_start.isoformat()}"


@transaction.atomic
def period_open(
    *,
    subscription: Subscription,
    previous_start: datetime | None = None,
    previous_end: datetime | None = None,
    now: datetime | None = None,
) -> CreditGrant | None:
    """What a new subscription period means for credits (receiver of
    `accounts.signals.subscription_period_opened`):

    1. the previous period's overage is closed into an OverageRecord (handed to billing);
    2. the plan credits that expired with it are expired (ledger entries);
    3. the account's overage allowance follows the plan (or the contract's cap);
    4. the plan's monthly credits — or, when the organization's contract is in force at the
       period's start and sets `credits_per_period`, the contract's credits INSTEAD — are
       granted, expiring at the period's end (once per period).

    Joins the caller's transaction: the signal is sent inside the subscription change, and the
    period's credits must commit or roll back with it.
    """
    now = now or timezone.now()
    plan = subscription.plan
    org_id = subscription.organization_id
    account = account_for(organization=subscription.organization)
    if previous_start is not None and previous_end is not None:
        overage_close(
            account=account, plan=plan, period_start=previous_start, period_end=previous_end
        )
    expired = CreditGrant.objects.filter(
        account=account,
        source=GrantSource.PLAN,
        expires_at__lte=subscription.current_period_start,
        remaining__gt=0,
    ).values_list("pk", flat=True)
    for grant_id in list(expired):
        ledger.grant_expire(grant_id=grant_id, now=max(now, subscription.current_period_start))
    start = subscription.current_period_start
    ledger.account_set_overage_limit(
        account=account, overage_limit=overage_limit_for(plan, organization_id=org_id, at=start)
    )
    amount, reason = plan.monthly_credits, f"{plan.name} plan credits"
    contract = contract_in_force(organization_id=org_id, at=start)
    if contract is not None and contract.credits_per_period is not None:
        amount, reason = contract.credits_per_period, f"Contract credits (v{contract.version})"
    if amount <= 0:
        return None
    return ledger.grant_create(
        account=account,
        amount=amount,
        source=GrantSource.PLAN,
        idempotency_key=_period_grant_key(subscription),
        expires_at=subscription.current_period_end,
        reference=f"{plan.slug} {subscription.current_period_start:%Y-%m-%d}",
        reason=reason,
        now=min(now, subscription.current_period_end - timedelta(seconds=1)),
    )


def overage_close(
    *, account: CreditAccount, plan: Plan, period_start: datetime, period_end: datetime
) -> OverageRecord | None:
    """Bill the period's overage: captured credits no grant covered and no earlier record
    billed, at the plan's overage price (the contract's when in force at the period's end).
    One record per account and period (idempotent)."""
    existing = OverageRecord.objects.filter(account=account, period_start=period_start).first()
    if existing is not None:
        return existing
    credits = selectors.overage_billable(account=account)
    if credits <= 0:
        return None
    price = overage_price_for(
        plan,
        organization_id=account.organization_id,
        at=period_end - timedelta(microseconds=1),
    )
    record = OverageRecord.objects.create(
        account=account,
        period_start=period_start,
        period_end=period_end,
        credits=credits,
        usd_per_credit=price,
        amount_usd=credits_to_usd(credits, price),
        plan_slug=plan.slug,
    )
    audit_record(
        action="overage.closed",
        organization=account.organization,
        target=record,
        data={"credits": str(credits), "usd": str(record.amount_usd), "plan": plan.slug},
    )
    return record


def subscriptions_renew_due(*, now: datetime | None = None) -> int:
    """Open the next period of every subscription whose period has ended and which Stripe does
    not manage (Stripe-managed ones renew on `invoice.paid`; trials end via credits.trials)."""
    now = now or timezone.now()
    due = Subscription.objects.filter(current_period_end__lte=now).exclude(status="trialing")
    due = due.filter(Q(stripe_subscription_id="") | Q(plan__monthly_price_usd=0))
    renewed = 0
    for sub in due.iterator():
        if subscription_advance_period(subscription=sub, now=now) is not None:
            renewed += 1
    return renewed


def grants_expire_due(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Expire every grant past its expiry that still holds credits (beat task). Each grant in
    its own short transaction; re-running finds nothing left to do."""
    now = now or timezone.now()
    due = (
        CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0)
        .order_by("expires_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for grant_id in list(due) if ledger.grant_expire(grant_id=grant_id, now=now))


def holds_release_stale(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Release holds past their expiry (jobs stuck past the timeout). Beat task; idempotent."""
    now = now or timezone.now()
    stale = list(
        CreditHold.objects.filter(status=HoldStatus.HELD, expires_at__lte=now).order_by(
            "expires_at", "id"
        )[:limit]
    )
    done = 0
    for hold in stale:
        try:
            ledger.hold_release(hold=hold, reason="hold expired", expired=True, now=now)
            done += 1
        except ValidationError:
            continue  # resolved meanwhile
    return done
