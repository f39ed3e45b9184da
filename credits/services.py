"""Credits workflows built on `credits.ledger` (which alone moves balances): plan periods,
overage close, quota-checked spending and manual adjustments with an audit trail."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import APIKey, Organization, Plan, Subscription
from accounts.services import audit_record, subscription_advance_period
from config.errors import (
    IdempotencyConflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
)
from credits import ledger, selectors
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    GrantSource,
    LedgerEntry,
    OverageRecord,
)
from credits.money import credits_to_usd, parse_credits


def overage_limit_for(plan: Plan) -> Decimal:
    return plan.overage_cap if plan.overage_enabled else Decimal(0)


def account_for(*, organization: Organization) -> CreditAccount:
    """The organization's credit account (created on first use)."""
    return ledger.account_get_or_create(organization=organization)


# --- Periods ----------------------------------------------------------------------------------


def period_grant_key(subscription: Subscription) -> str:
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
    3. the account's overage allowance follows the plan;
    4. the plan's monthly credits are granted, expiring at the period's end (once per period).
    """
    now = now or timezone.now()
    plan = subscription.plan
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
    ledger.account_set_overage_limit(account=account, overage_limit=overage_limit_for(plan))
    if plan.monthly_credits <= 0:
        return None
    return ledger.grant_create(
        account=account,
        amount=plan.monthly_credits,
        source=GrantSource.PLAN,
        idempotency_key=period_grant_key(subscription),
        expires_at=subscription.current_period_end,
        reference=f"{plan.slug} {subscription.current_period_start:%Y-%m-%d}",
        reason=f"{plan.name} plan credits",
        now=min(now, subscription.current_period_end - timedelta(seconds=1)),
    )


def overage_close(
    *, account: CreditAccount, plan: Plan, period_start: datetime, period_end: datetime
) -> OverageRecord | None:
    """Bill the period's overage: captured credits no grant covered and no earlier record
    billed, at the plan's overage price. One record per account and period (idempotent)."""
    existing = OverageRecord.objects.filter(account=account, period_start=period_start).first()
    if existing is not None:
        return existing
    credits = ledger.overage_billable(account=account)
    if credits <= 0:
        return None
    price = plan.overage_price_usd or Decimal(0)
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
    not manage (Stripe-managed ones renew on `invoice.paid`). Beat task; idempotent."""
    now = now or timezone.now()
    due = Subscription.objects.filter(current_period_end__lte=now).filter(
        Q(stripe_subscription_id="") | Q(plan__monthly_price_usd=0)
    )
    renewed = 0
    for sub in due.iterator():
        if subscription_advance_period(subscription=sub, now=now) is not None:
            renewed += 1
    return renewed


# --- Spending ---------------------------------------------------------------------------------


@transaction.atomic
def spend_authorize(
    *,
    organization: Organization,
    amount,
    key: str,
    api_key: APIKey | None = None,
    check_rate_limit: bool = False,
    daily_count: int | None = None,
    concurrent_count: int | None = None,
    metadata: dict | None = None,
    now: datetime | None = None,
) -> CreditHold:
    """May this organization start a job costing `amount`? Returns the hold, or raises the
    first refusal in the spec's order, each with its code:

    1. API access by plan (API-key callers) → permission_denied (403)
    2. rate limit per API key (when the caller hasn't counted the request) → rate_limited (429)
    3. daily generation cap → quota_exceeded (429, reason daily_generation_cap)
    4. concurrent jobs → quota_exceeded (429, reason concurrent_jobs)
    5. credits (+ overage allowance) → insufficient_credits (402)

    Counts default to the account's holds (created today, UTC / still open); the generations
    app may pass its own. The account row is locked first so concurrent submissions of one
    organization see each other's holds. Replaying `key` returns the existing hold unchecked.
    """
    from config.api.throttling import hit

    now = now or timezone.now()
    amount = parse_credits(amount)
    try:
        plan = organization.subscription.plan
    except Subscription.DoesNotExist:
        raise NotFound("This organization has no subscription.") from None
    # Lock the account first (one statement): concurrent submissions of one organization then
    # see each other's holds when counting.
    account = CreditAccount.objects.select_for_update().filter(organization=organization).first()
    if account is None:
        account = account_for(organization=organization)
        CreditAccount.objects.select_for_update().filter(pk=account.pk).first()
    existing = CreditHold.objects.filter(account=account, key=key).first()
    if existing is not None:  # a replay: no quota applies, no second hold
        if existing.amount != amount:
            raise IdempotencyConflict(
                f"Hold {key!r} already exists for {existing.amount} credits, not {amount}."
            )
        return existing

    if api_key is not None and not plan.api_access:
        raise PermissionDenied("Your plan does not include API access.", reason="api_access")
    if api_key is not None and check_rate_limit and plan.api_rate_limit_per_min is not None:
        allowed, reset = hit(f"key:{api_key.pk}", plan.api_rate_limit_per_min)
        if not allowed:
            raise RateLimited(
                f"Rate limit of {plan.api_rate_limit_per_min} requests per minute exceeded.",
                headers={"Retry-After": str(reset)},
            )
    if plan.daily_generation_cap is not None:
        if daily_count is None:
            daily_count = selectors.generations_today(account=account, now=now)
        if daily_count >= plan.daily_generation_cap:
            raise QuotaExceeded(
                f"Daily generation cap of {plan.daily_generation_cap} reached; "
                "it resets at midnight UTC.",
                reason="daily_generation_cap",
                limit=plan.daily_generation_cap,
            )
    if plan.max_concurrent_jobs is not None:
        if concurrent_count is None:
            concurrent_count = selectors.jobs_running(account=account)
        if concurrent_count >= plan.max_concurrent_jobs:
            raise QuotaExceeded(
                f"{plan.max_concurrent_jobs} concurrent job(s) allowed on the {plan.name} plan; "
                "wait for one to finish.",
                reason="concurrent_jobs",
                limit=plan.max_concurrent_jobs,
            )
    return ledger.hold_create(
        account=account, amount=amount, key=key, api_key=api_key, metadata=metadata, now=now
    )


# --- Grants and manual adjustments -----------------------------------------------------------


@transaction.atomic
def organization_grant(
    *,
    organization: Organization,
    amount,
    source: str,
    reason: str,
    idempotency_key: str,
    actor=None,
    expires_at: datetime | None = None,
) -> CreditGrant:
    """Credits into an organization's account (purchases, promos, operator grants)."""
    account = account_for(organization=organization)
    replay = LedgerEntry.objects.filter(account=account, idempotency_key=idempotency_key).exists()
    grant = ledger.grant_create(
        account=account,
        amount=amount,
        source=source,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        actor=actor,
        reason=reason,
    )
    if replay:  # the same key again: no second effect, no second audit row
        return grant
    audit_record(
        action="credits.granted",
        organization=organization,
        actor=actor,
        target=grant,
        data={"amount": str(grant.amount), "source": source, "reason": reason},
    )
    return grant


@transaction.atomic
def account_adjust(
    *,
    account: CreditAccount,
    amount,
    reason: str,
    actor,
    idempotency_key: str,
) -> LedgerEntry:
    """A staff correction through the ledger, recorded with the acting user."""
    replay = LedgerEntry.objects.filter(account=account, idempotency_key=idempotency_key).exists()
    entry = ledger.adjust(
        account=account,
        amount=amount,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
    )
    if replay:
        return entry
    audit_record(
        action="credits.adjusted",
        organization=account.organization,
        actor=actor,
        target=entry,
        data={"amount": str(entry.balance_delta), "reason": reason},
    )
    return entry
