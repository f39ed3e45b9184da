"""The public way to move credits. Other apps, the admin and commands call these; only the
credits app itself uses `credits.ledger` (import-linter forbids it elsewhere).

Two kinds of function live here:

* **Staff and operator actions** (`organization_grant`, `account_adjust`,
  `hold_release_by_staff`, `overage_settle`): each does the movement and its audit row in one
  `transaction.atomic(durable=True)` (Zulip's `do_*` style) — they are whole actions, never
  part of a caller's transaction, and a replay (same idempotency key, or nothing left to do)
  writes no second audit row.
* **Steps of another workflow's transaction**: the hold of a job (`spend_authorize`, in the
  job's acceptance transaction), its capture or release (in the job's terminal transaction),
  a new subscription period (`period_open`, the receiver of the signal sent inside the
  subscription change's transaction), and `organization_grant_in_transaction` (for
  `manage.py create_org`, which writes an organization, its grant and its API key all or
  nothing). They join the caller's transaction: the movement must commit or roll back with the
  rows it belongs to. Their ledger entry (keyed by the job or period) is the record;
  `overage_close` and the grant write their audit rows.

Billing (`credits.billing`, part of this app) moves credits inside the Stripe event's
transaction (purchase grant, refund clawback, plan-change top-up, overage settled by an
invoice): it calls `credits.ledger` directly and writes its own audit rows there.
Batch jobs (`grants_expire_due`, `holds_release_stale`) run each item in its own short
transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.contracts.selectors import contract_in_force
from accounts.models import APIKey, FairUseThrottle, Organization, Plan, Subscription
from accounts.selectors import api_access_check
from accounts.services import audit_record, subscription_advance_period
from config.errors import (
    IdempotencyConflict,
    NotFound,
    QuotaExceeded,
    ValidationError,
    limit_details,
)
from config.rows import columns as rows_columns
from config.rows import execute as rows_execute
from config.rows import instance as rows_instance
from config.transactions import atomic_joinable
from credits import ledger, selectors
from credits.budgets import services as budgets
from credits.contract_terms import (  # noqa: F401 (callers use credits.services)
    contract_change,
    overage_limit_for,
    overage_price_for,
)
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    GrantSource,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)
from credits.money import credits_to_usd, parse_credits
from credits.velocity import services as velocity


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


# --- Staff and operator actions: movement + audit row, one durable transaction each ----------


@transaction.atomic(durable=True)
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
    """Credits into an organization's account (promos, operator grants), audited with the
    acting user. Replaying the key returns the grant and writes nothing."""
    return organization_grant_in_transaction(
        organization=organization,
        amount=amount,
        source=source,
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
        expires_at=expires_at,
    )


def organization_grant_in_transaction(
    *,
    organization: Organization,
    amount,
    source: str,
    reason: str,
    idempotency_key: str,
    actor=None,
    expires_at: datetime | None = None,
) -> CreditGrant:
    """`organization_grant` as a step of the caller's transaction, for a caller that writes
    more that must commit or roll back with the grant: `manage.py create_org` creates the
    organization, its grant and its API key all or nothing."""
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


@transaction.atomic(durable=True)
def account_adjust(
    *,
    account: CreditAccount,
    amount,
    reason: str,
    actor,
    idempotency_key: str,
) -> LedgerEntry:
    """A staff correction through the ledger, audited with the acting user. Replaying the key
    returns the entry and writes nothing."""
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


@transaction.atomic(durable=True)
def hold_release_by_staff(
    *, hold: CreditHold, actor, reason: str = "released by admin"
) -> CreditHold:
    """Staff give an open hold back in full (a stuck job), audited with the acting user.
    ValidationError when the hold is no longer held (captured, released or expired meanwhile):
    nothing is written."""
    # Lock order of the ledger: the hold row first, then the account.
    current = (
        CreditHold.objects.select_for_update(of=("self",))
        .select_related("account__organization")
        .get(pk=hold.pk)
    )
    if current.status != HoldStatus.HELD:
        raise ValidationError(
            f"Hold {current.key!r} is already {current.status}.",
            errors={"hold": [f"Already {current.status}."]},
        )
    released = ledger.hold_release(hold=current, actor=actor, reason=reason)
    audit_record(
        action="credits.hold_released",
        organization=current.account.organization,
        actor=actor,
        target=released,
        data={"key": released.key, "amount": str(released.amount), "reason": reason},
    )
    return released


@transaction.atomic(durable=True)
def overage_settle(*, record: OverageRecord, actor, reason: str = "") -> LedgerEntry:
    """Record by hand that an overage was paid (staff): the settlement entry and its audit row.
    A record settled already returns its entry and writes nothing; a void one is a
    ValidationError. (A Stripe `invoice.paid` settles through `credits.billing.overage`, in the
    event's transaction.)"""
    current = (
        OverageRecord.objects.select_for_update(of=("self",))
        .select_related("account__organization")
        .get(pk=record.pk)
    )
    if current.settlement_entry_id:
        return current.settlement_entry
    if current.status == OverageStatus.VOID:
        raise ValidationError("A void overage record cannot be settled.")
    entry = ledger.overage_settle(record=current, actor=actor, reason=reason)
    audit_record(
        action="overage.settled",
        organization=current.account.organization,
        actor=actor,
        target=current,
        data={"credits": str(current.credits), "entry": entry.pk},
    )
    return entry


# --- Holds of other apps' jobs ----------------------------------------------------------------
# A job's hold is resolved inside the job's own terminal transaction (owned by the generations
# app), so these two join the caller's transaction instead of opening a durable one; the
# ledger entry, keyed by the hold, is the audit record.


def hold_capture(
    *, hold: CreditHold, amount=None, actor=None, now: datetime | None = None
) -> CreditHold:
    """Charge a job's hold (all of it, or `amount` ≤ held; the rest is released). Once."""
    return ledger.hold_capture(hold=hold, amount=amount, actor=actor, now=now)


def hold_release(
    *,
    hold: CreditHold,
    reason: str = "released",
    actor=None,
    expired: bool = False,
    now: datetime | None = None,
) -> CreditHold:
    """Give a job's hold back in full (failed through no fault of the customer, cancelled,
    stale). Once."""
    return ledger.hold_release(hold=hold, reason=reason, actor=actor, expired=expired, now=now)


def hold_extend(*, hold: CreditHold, until: datetime) -> bool:
    """Keep a live job's hold from the stale-hold sweep until `until` (see the ledger). False
    when the hold is no longer held (the sweep or a release got there first)."""
    return ledger.hold_extend(hold=hold, until=until)


# --- Usage outside jobs -------------------------------------------------------------------------


def account_lock(*, organization: Organization) -> CreditAccount:
    """The organization's credit account, row-locked for the caller's transaction (created on
    first use): a batch of usage events takes it first, so concurrent batches of one
    organization run one after the other and never deadlock on each other's events."""
    account = account_for(organization=organization)
    return CreditAccount.objects.select_for_update().get(pk=account.pk)


def usage_charge(
    *,
    account: CreditAccount,
    amount,
    key: str,
    api_key: APIKey | None = None,
    metadata: dict | None = None,
    now: datetime | None = None,
) -> CreditHold:
    """Charge metered usage that is not a job (a usage event): a hold of `amount`, captured at
    once — the ledger's own two-phase transfer, so the entries, the burn-down order and the
    overage allowance are those of a job. InsufficientCredits when available credits plus the
    overage allowance don't cover it. Idempotent on `key` (a replay returns the captured hold,
    moving nothing). No quota applies (the usage already happened). Joins the caller's
    transaction (the batch of events), after `account_lock`."""
    hold = ledger.hold_create(
        account=account, amount=amount, key=key, api_key=api_key, metadata=metadata, now=now
    )
    return ledger.hold_capture(hold=hold, now=now)
