"""Credits entering an account (a grant: a bucket with its own priority and expiry), leaving it
when the grant expires, and taken back for one grant (a refunded purchase)."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from config.errors import NotFound, ValidationError
from credits.ledger._core import (
    ZERO,
    Moves,
    add_to_grants,
    allocate,
    entry_write,
    move_account,
    now_or,
    replayed,
)
from credits.models import (
    DEFAULT_PRIORITY,
    CreditAccount,
    CreditGrant,
    EntryKind,
    GrantSource,
    LedgerEntry,
)
from credits.money import parse_credits, to_credits


def grant_create(
    *,
    account: CreditAccount,
    amount,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int | None = None,
    reference: str = "",
    actor=None,
    reason: str = "",
    now: datetime | None = None,
) -> CreditGrant:
    """Credits entering the account: a new grant (bucket) and its posting entry."""
    amount = parse_credits(amount)
    if source not in GrantSource.values:
        raise ValidationError(f"Unknown grant source {source!r}.", errors={"source": ["Unknown."]})
    if not idempotency_key:
        raise ValidationError("An idempotency key is required.")
    now = now_or(now)
    if expires_at is not None and expires_at <= now:
        raise ValidationError(
            "expires_at must be in the future.", errors={"expires_at": ["In the past."]}
        )
    kind = {
        GrantSource.ADJUSTMENT: EntryKind.ADJUSTMENT,
        GrantSource.REFUND: EntryKind.REFUND,
    }.get(source, EntryKind.GRANT)
    try:
        with transaction.atomic():
            posted = move_account(account.pk, balance_delta=amount, held_delta=ZERO, now=now)
            if posted is None:
                raise NotFound("No such credit account.")
            grant = CreditGrant.objects.create(
                account_id=account.pk,
                source=source,
                amount=amount,
                remaining=amount,
                priority=DEFAULT_PRIORITY[source] if priority is None else priority,
                expires_at=expires_at,
                reference=reference[:255],
            )
            entry = entry_write(
                account.pk,
                posted,
                kind=kind,
                amount=amount,
                balance_delta=amount,
                held_delta=ZERO,
                key=idempotency_key,
                now=now,
                grant_id=grant.pk,
                actor=actor,
                reason=reason or f"{source} grant",
            )
            allocate(entry, [(grant.pk, amount)])
            _grant_webhook(account, grant, balance=posted.balance)
            return grant
    except IntegrityError:
        entry = replayed(account.pk, idempotency_key, kind=kind, amount=amount)
        if entry is None:
            raise
        return entry.grant


def _grant_webhook(account: CreditAccount, grant: CreditGrant, *, balance) -> None:
    """The `credits.granted` webhook event, in the grant's transaction (the outbox)."""
    webhook_event_emit(
        organization=account.organization,
        type=EventType.CREDITS_GRANTED,
        payload={
            "grant": grant.pk,
            "source": grant.source,
            "amount": str(grant.amount),
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            "balance": str(balance),
        },
        dedupe_key=f"grant:{grant.pk}",
    )


def expire_grant_rest(grant_id: int, *, now: datetime) -> LedgerEntry | None:
    """Post an expiry for whatever the grant still holds. Caller holds the account lock."""
    grant = CreditGrant.objects.get(pk=grant_id)
    if grant.remaining <= 0:
        return None
    rest = grant.remaining
    posted = move_account(grant.account_id, balance_delta=-rest, held_delta=ZERO, now=now)
    add_to_grants([(grant.pk, -rest)])
    CreditGrant.objects.filter(pk=grant.pk).update(expired_at=now)
    entry = entry_write(
        grant.account_id,
        posted,
        kind=EntryKind.EXPIRY,
        amount=rest,
        balance_delta=-rest,
        held_delta=ZERO,
        key=f"expiry:{grant.pk}:{posted.version}",
        now=now,
        grant_id=grant.pk,
        reason=f"{grant.get_source_display()} credits expired",
    )
    allocate(entry, [(grant.pk, -rest)])
    return entry


def grant_expire(*, grant_id: int, now: datetime | None = None) -> LedgerEntry | None:
    """Expire the unspent rest of a grant whose time has come. Idempotent: a second call finds
    nothing left."""
    now = now_or(now)
    with transaction.atomic():
        account_id = CreditGrant.objects.values_list("account_id", flat=True).get(pk=grant_id)
        # Lock order: account, then grant.
        CreditAccount.objects.select_for_update().filter(pk=account_id).first()
        grant = CreditGrant.objects.get(pk=grant_id)
        if grant.expires_at is None or grant.expires_at > now or grant.remaining <= 0:
            return None
        return expire_grant_rest(grant.pk, now=now)


def grant_clawback(
    *,
    grant: CreditGrant,
    amount,
    idempotency_key: str,
    reason: str,
    actor=None,
    now: datetime | None = None,
) -> LedgerEntry:
    """Take `amount` back for one grant (a refunded purchase): what the grant still holds is
    taken from it; the rest (credits already spent) becomes unfunded (a negative balance, billed
    like overage). One adjustment entry, never refused; replaying the key moves nothing."""
    amount = parse_credits(amount)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A clawback needs a reason.", errors={"reason": ["Required."]})
    now = now_or(now)
    try:
        with transaction.atomic():
            posted = move_account(grant.account_id, balance_delta=-amount, held_delta=ZERO, now=now)
            if posted is None:
                raise NotFound("No such credit account.")
            # The account row is locked: the grant's `remaining` can't move under us.
            remaining = to_credits(
                CreditGrant.objects.values_list("remaining", flat=True).get(pk=grant.pk)
            )
            taken = min(amount, remaining)
            moves: Moves = []
            if taken > 0:
                moves.append((grant.pk, -taken))
                add_to_grants(moves)
            if amount > taken:
                moves.append((None, -(amount - taken)))
            entry = entry_write(
                grant.account_id,
                posted,
                kind=EntryKind.ADJUSTMENT,
                amount=amount,
                balance_delta=-amount,
                held_delta=ZERO,
                key=idempotency_key,
                now=now,
                grant_id=grant.pk,
                actor=actor,
                reason=reason,
            )
            allocate(entry, moves)
            return entry
    except IntegrityError:
        entry = replayed(
            grant.account_id, idempotency_key, kind=EntryKind.ADJUSTMENT, amount=amount
        )
        if entry is None:
            raise
        return entry
