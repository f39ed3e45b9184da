"""The hold of a job: `spend_authorize` applies the quotas in the spec's order and places the
hold (a fair-use plan's usage record). Part of `credits.services`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.utils import timezone

from accounts.models import APIKey, FairUseThrottle, Organization, Subscription
from accounts.selectors import api_access_check
from config.errors import (
    IdempotencyConflict,
    NotFound,
    QuotaExceeded,
    limit_details,
)
from config.rows import columns as rows_columns
from config.rows import execute as rows_execute
from config.rows import instance as rows_instance
from config.transactions import atomic_joinable
from credits import ledger, selectors
from credits.budgets import services as budgets
from credits.models import (
    CreditAccount,
    CreditHold,
)
from credits.money import parse_credits
from credits.services.periods import account_for
from credits.velocity import services as velocity

# --- Spending ---------------------------------------------------------------------------------


@cache
def _spend_sql() -> tuple[str, str]:
    return (
        f"SELECT {rows_columns(CreditAccount, 'a')} FROM credits_creditaccount a "
        "WHERE a.organization_id = %s ORDER BY a.id LIMIT 1 FOR UPDATE",
        f"SELECT {rows_columns(CreditHold, 'h')} FROM credits_credithold h "
        "WHERE h.account_id = %s AND h.key = %s ORDER BY h.created_at DESC, h.id DESC LIMIT 1",
    )


def _account_locked(organization_id: int) -> CreditAccount | None:
    """`CreditAccount.objects.select_for_update().filter(organization=…).first()`, without the
    ORM's compiler (config.rows: it runs on every submission)."""
    rows = rows_execute(_spend_sql()[0], [organization_id])
    return rows_instance(CreditAccount, rows[0]) if rows else None


def _hold_by_key(account_id: int, key: str) -> CreditHold | None:
    """`CreditHold.objects.filter(account=…, key=…).first()`, without the ORM's compiler."""
    rows = rows_execute(_spend_sql()[1], [account_id, key])
    return rows_instance(CreditHold, rows[0]) if rows else None


@atomic_joinable  # savepoint=False: joins the caller's durable transaction (the submission)
def spend_authorize(
    *,
    organization: Organization,
    amount,
    key: str,
    api_key: APIKey | None = None,
    user=None,
    metadata: dict | None = None,
    now: datetime | None = None,
) -> CreditHold:
    """May this organization start a job costing `amount`? Returns the hold, or raises the
    first refusal in the spec's order, each with its code and the `limit` it names (SPEC §7):

    1. API access by plan (API-key callers) → permission_denied (403, limit api_access)
    2. (the rate limit per API key is the API layer's throttle, before this is called)
    3. daily generation cap → quota_exceeded (429, limit daily_cap)
    4. concurrent jobs → quota_exceeded (429, limit concurrency)
    5. budgets: the API key's, the member's (`user`, or the key's creator) and the member's
       teams' → quota_exceeded (429, limit budget:<scope>:<id>); each reserves `amount`
       (the list price, on a fair-use unlimited plan too) with the hold (`credits.budgets`)
    5b. spend velocity (paid plans): paused, or the last hour far above the trailing average
       → quota_exceeded (429, limit velocity) — `credits.velocity.services`
    6. credits (+ overage allowance) → insufficient_credits (402, limit credits)

    On a fair-use unlimited plan step 5 is replaced: the job costs nothing — the hold is a
    usage record of 0 credits (`amount`, the list price, is kept in its metadata) — and past
    the plan's fair-use cap the job is throttled, never refused: the hold's metadata says how
    (`fair_use`: `{"mode": "priority"}` or `{"mode": "rate", "not_before": …}`), and the
    submission applies it (docs/planning.md, "Plan shapes").

    Counts are the account's holds (created today, UTC / still open). The account row is
    locked first so concurrent submissions of one organization see each other's holds.
    Replaying `key` returns the existing hold unchecked. Joins the caller's transaction (the
    job's acceptance).
    """
    now = now or timezone.now()
    amount = parse_credits(amount)
    try:
        plan = organization.subscription.plan
    except Subscription.DoesNotExist:
        raise NotFound("This organization has no subscription.") from None
    # Lock the account first (one statement): concurrent submissions of one organization then
    # see each other's holds when counting. Both lookups are fixed statements (config.rows).
    account = _account_locked(organization.pk)
    if account is None:
        account = account_for(organization=organization)
        CreditAccount.objects.select_for_update().filter(pk=account.pk).first()
    existing = _hold_by_key(account.pk, key)
    if existing is not None:  # a replay: no quota applies, no second hold
        if existing.amount != (Decimal(0) if plan.unlimited else amount):
            raise IdempotencyConflict(
                f"Hold {key!r} already exists for {existing.amount} credits, not {amount}."
            )
        return existing

    if api_key is not None:
        api_access_check(organization=organization)
    daily_cap = plan.daily_generation_cap
    today = selectors.generations_today(account=account, now=now) if daily_cap is not None else 0
    if daily_cap is not None and today >= daily_cap:
        raise QuotaExceeded(
            f"Daily generation cap of {plan.daily_generation_cap} reached; "
            "it resets at midnight UTC.",
            reason="daily_generation_cap",
            **limit_details(
                name="daily_cap",
                value=daily_cap,
                used=today,
                resets_at=selectors.quota_day_start(now) + timedelta(days=1),
            ),
        )
    concurrent_cap = plan.max_concurrent_jobs
    running = selectors.jobs_running(account=account) if concurrent_cap is not None else 0
    if concurrent_cap is not None and running >= concurrent_cap:
        raise QuotaExceeded(
            f"{plan.max_concurrent_jobs} concurrent job(s) allowed on the {plan.name} plan; "
            "wait for one to finish.",
            reason="concurrent_jobs",
            **limit_details(name="concurrency", value=concurrent_cap, used=running),
        )
    member_id = api_key.created_by_id if api_key is not None else getattr(user, "pk", None)
    budget_ids = budgets.budgets_reserve(
        organization=organization,
        api_key_id=api_key.pk if api_key is not None else None,
        user_id=member_id,
        amount=amount,
        now=now,
    )
    if budget_ids:  # the hold resolves its reservations (credits.ledger.holds)
        metadata = {**(metadata or {}), "budgets": len(budget_ids)}
    if not plan.unlimited:  # spend velocity (credits.velocity): after budgets, before credits
        velocity.velocity_check(organization=organization, account=account, amount=amount, now=now)
    if plan.unlimited:
        hold = _fair_use_hold(
            organization=organization,
            account=account,
            amount=amount,
            key=key,
            api_key=api_key,
            metadata=metadata,
            now=now,
        )
    else:
        # The account is locked above and `key` was looked up under the lock: no savepoint.
        hold = ledger.hold_create(
            account=account,
            amount=amount,
            key=key,
            api_key=api_key,
            metadata=metadata,
            now=now,
            key_checked=True,
        )
    budgets.budgets_record(hold=hold, budget_ids=budget_ids, amount=amount, now=now)
    return hold


# A rate-throttled job's start time in a hold's metadata: fixed-width UTC text, so that the
# text order is the time order (`selectors.fair_use_last_start` takes the max in SQL).
FAIR_USE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def fair_use_start(hold: CreditHold) -> datetime | None:
    """When a rate-throttled job may start (None: not deferred)."""
    text = ((hold.metadata or {}).get("fair_use") or {}).get("not_before")
    if not text:
        return None
    return datetime.strptime(text, FAIR_USE_TIME_FORMAT).replace(tzinfo=UTC)


def _fair_use_hold(
    *,
    organization: Organization,
    account: CreditAccount,
    amount: Decimal,
    key: str,
    api_key: APIKey | None,
    metadata: dict | None,
    now: datetime,
) -> CreditHold:
    """The hold of a job on a fair-use unlimited plan: 0 credits (a usage record), throttled
    past the cap. Caller holds the account's row lock, so concurrent submissions count each
    other and rate-throttled ones get distinct start times."""
    subscription = organization.subscription
    plan = subscription.plan
    meta = {**(metadata or {}), "list_credits": str(amount), "unlimited": True}
    expires_at = None
    status = selectors.fair_use_status(organization=organization, account=account)
    if status is not None and status.throttled:
        fair_use: dict = {"mode": plan.fair_use_throttle}
        if plan.fair_use_throttle == FairUseThrottle.RATE and plan.fair_use_hourly_rate:
            interval = timedelta(seconds=3600 / plan.fair_use_hourly_rate)
            start = now
            last = selectors.fair_use_last_start(
                account=account, since=subscription.current_period_start
            )
            if last:
                previous = datetime.strptime(last, FAIR_USE_TIME_FORMAT).replace(tzinfo=UTC)
                start = max(now, previous + interval)
            fair_use["not_before"] = start.astimezone(UTC).strftime(FAIR_USE_TIME_FORMAT)
            # The stale-hold sweep must not take the hold of a job that may not start yet.
            expires_at = start + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
        meta["fair_use"] = fair_use
    return ledger.hold_create_usage(
        account=account,
        key=key,
        expires_at=expires_at,
        api_key=api_key,
        metadata=meta,
        now=now,
    )
