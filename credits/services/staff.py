"""Staff and operator actions: the movement and its audit row in one durable transaction each
(and `organization_grant_in_transaction`, for a caller's all-or-nothing). Part of
`credits.services`."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.models import Organization
from accounts.services import audit_record
from config.errors import (
    ValidationError,
)
from credits import ledger
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)
from credits.services.periods import account_for

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
