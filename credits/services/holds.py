"""The resolution of other apps' holds (in their transactions) and usage outside jobs. Part
of `credits.services`."""

from __future__ import annotations

from datetime import datetime

from accounts.models import APIKey, Organization
from credits import ledger
from credits.models import (
    CreditAccount,
    CreditHold,
)
from credits.services.periods import account_for

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
