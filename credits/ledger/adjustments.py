"""Manual corrections of an account by staff."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from config.errors import NotFound, ValidationError
from credits.ledger._core import (
    ZERO,
    allocate,
    draw,
    entry_write,
    move_account,
    now_or,
    replayed,
)
from credits.ledger.grants import grant_create
from credits.models import CreditAccount, EntryKind, GrantSource, LedgerEntry
from credits.money import parse_credits


def adjust(
    *,
    account: CreditAccount,
    amount,
    reason: str,
    idempotency_key: str,
    actor=None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> LedgerEntry:
    """A manual correction. Positive: a new adjustment grant. Negative: taken from grants in
    burn-down order; what no grant covers becomes unfunded (negative balance), never refused."""
    amount = parse_credits(amount, allow_negative=True)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("An adjustment needs a reason.", errors={"reason": ["Required."]})
    if amount > 0:
        grant = grant_create(
            account=account,
            amount=amount,
            source=GrantSource.ADJUSTMENT,
            idempotency_key=idempotency_key,
            expires_at=expires_at,
            actor=actor,
            reason=reason,
            now=now,
        )
        return grant.entries.get(kind=EntryKind.ADJUSTMENT)
    now = now_or(now)
    debit = -amount
    try:
        with transaction.atomic():
            posted = move_account(account.pk, balance_delta=amount, held_delta=ZERO, now=now)
            if posted is None:
                raise NotFound("No such credit account.")
            moves = draw(account.pk, debit, now)
            entry = entry_write(
                account.pk,
                posted,
                kind=EntryKind.ADJUSTMENT,
                amount=debit,
                balance_delta=amount,
                held_delta=ZERO,
                key=idempotency_key,
                now=now,
                actor=actor,
                reason=reason,
            )
            allocate(entry, moves)
            return entry
    except IntegrityError:
        entry = replayed(account.pk, idempotency_key, kind=EntryKind.ADJUSTMENT, amount=debit)
        if entry is None:
            raise
        return entry
