"""Holds: two-phase transfers. A hold raises `held` and draws from grants in burn-down order
(the part no grant covers is *unfunded*: overage); capture posts it (balance −= x) and may
charge less than held (the rest is released); release gives back exactly what the hold took.
A hold resolves once: its status changes by a conditional UPDATE (lock order: hold row →
account row → grant rows → budget rows). The path that wins that change also resolves the
hold's budget reservations (`_budgets_resolve`), so each is resolved exactly once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction

from config.errors import IdempotencyConflict, InsufficientCredits, NotFound, ValidationError
from credits.budgets import _core as budgets
from credits.ledger._core import (
    ACCOUNT,
    ALLOC,
    ALLOC_INSERT,
    BURN_DOWN_SQL,
    DRAW_CTE,
    ENTRY,
    ENTRY_INSERT,
    GRANT,
    HOLD,
    ZERO,
    Moves,
    Posted,
    actor_id,
    add_to_grants,
    allocate,
    entry_write,
    execute,
    fetchone,
    move_account,
    now_or,
)
from credits.ledger.grants import expire_grant_rest
from credits.models import CreditAccount, CreditGrant, CreditHold, EntryKind, HoldStatus
from credits.money import parse_credits, to_credits

# After the account UPDATE has taken the lock, one statement draws the grants in burn-down order
# and writes the hold, its entry and its allocations (data-modifying CTEs). Its snapshot is
# taken after the lock, so it sees every committed change to the grants.
_HOLD_SQL = f"""{DRAW_CTE},
funded AS (SELECT COALESCE(SUM(take), 0) AS s FROM take),
h AS (
    INSERT INTO {HOLD} (account_id, key, amount, status, captured_amount, unfunded, api_key_id,
                        metadata, expires_at, created_at, resolved_at)
    SELECT %(account)s, %(key)s, %(amount)s, 'held', NULL, %(amount)s - funded.s, %(api_key)s,
           %(metadata)s::jsonb, %(expires_at)s, %(now)s, NULL
    FROM funded
    RETURNING id, unfunded
),
e AS (
    {ENTRY_INSERT}
    SELECT %(account)s, %(sequence)s, 'hold', %(amount)s, 0, %(amount)s, %(balance)s,
           %(held)s, NULL, h.id, %(entry_key)s, NULL, %(reason)s, %(now)s
    FROM h
    RETURNING id
),
allocated AS (
    {ALLOC_INSERT}
    SELECT e.id, %(account)s, drawn.id, -drawn.take FROM e, drawn
    UNION ALL
    SELECT e.id, %(account)s, NULL, -h.unfunded FROM e, h WHERE h.unfunded > 0
)
SELECT h.id, h.unfunded FROM h
"""


def _hold_draw_and_record(
    account_id: int,
    posted: Posted,
    *,
    amount: Decimal,
    key: str,
    now: datetime,
    expires_at: datetime,
    api_key,
    metadata: dict,
) -> CreditHold:
    hold_id, unfunded = fetchone(
        _HOLD_SQL,
        {
            "account": account_id,
            "now": now,
            "amount": amount,
            "key": key,
            "api_key": api_key.pk if api_key is not None else None,
            "metadata": json.dumps(metadata),
            "expires_at": expires_at,
            "sequence": posted.version,
            "balance": posted.balance,
            "held": posted.held,
            "entry_key": f"hold:{key}",
            "reason": str(metadata.get("description", ""))[:500],
        },
    )
    return CreditHold(
        pk=hold_id,
        account_id=account_id,
        key=key,
        amount=amount,
        status=HoldStatus.HELD,
        unfunded=to_credits(unfunded),
        api_key=api_key,
        metadata=metadata,
        expires_at=expires_at,
        created_at=now,
    )


def hold_create(
    *,
    account: CreditAccount,
    amount,
    key: str,
    expires_at: datetime | None = None,
    api_key=None,
    metadata: dict | None = None,
    now: datetime | None = None,
    key_checked: bool = False,
) -> CreditHold:
    """Reserve `amount` (a pending debit). InsufficientCredits when available credits plus the
    overage allowance don't cover it. Replaying `key` returns the existing hold.

    `key_checked`: the caller holds the account's row lock and found no hold with `key` under
    it (`spend_authorize`). Every hold of an account is written under that lock, so the insert
    cannot meet a duplicate key, and the hold is written without the savepoint that would
    catch one (two statements fewer on every submission)."""
    amount = parse_credits(amount)
    if not key:
        raise ValidationError("A hold needs a key (e.g. the job id).")
    now = now_or(now)
    expires_at = expires_at or now + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
    write = partial(
        _hold_write,
        account.pk,
        amount=amount,
        key=key,
        now=now,
        expires_at=expires_at,
        api_key=api_key,
        metadata=metadata or {},
    )
    if key_checked:
        return write()
    try:
        with transaction.atomic():
            return write()
    except IntegrityError:
        existing = CreditHold.objects.filter(account_id=account.pk, key=key).first()
        if existing is None:
            raise
        return _hold_replay(existing, amount)


def _hold_write(
    account_id: int,
    *,
    amount: Decimal,
    key: str,
    now: datetime,
    expires_at: datetime,
    api_key,
    metadata: dict,
) -> CreditHold:
    """The hold's account movement and rows (`hold_create`), or why not."""
    posted = move_account(
        account_id,
        balance_delta=ZERO,
        held_delta=amount,
        now=now,
        require_available=amount,
    )
    if posted is None:
        existing = CreditHold.objects.filter(account_id=account_id, key=key).first()
        if existing is not None:
            return _hold_replay(existing, amount)
        if not CreditAccount.objects.filter(pk=account_id).exists():
            raise NotFound("No such credit account.")
        raise _insufficient(account_id, amount)
    return _hold_draw_and_record(
        account_id,
        posted,
        amount=amount,
        key=key,
        now=now,
        expires_at=expires_at,
        api_key=api_key,
        metadata=metadata,
    )


def hold_create_usage(
    *,
    account: CreditAccount,
    key: str,
    expires_at: datetime | None = None,
    api_key=None,
    metadata: dict | None = None,
    now: datetime | None = None,
) -> CreditHold:
    """A hold of 0 credits: the usage record of a job that costs nothing (a fair-use unlimited
    plan). It counts for the quotas like any hold (daily cap, concurrency, fair-use cap) and
    resolves once like any hold, but moves no credits, so it writes no ledger entry and leaves
    the account's balance, held and version alone (every invariant holds trivially). The
    caller holds the account's row lock (`spend_authorize`). Replaying `key` returns it."""
    if not key:
        raise ValidationError("A hold needs a key (e.g. the job id).")
    now = now_or(now)
    expires_at = expires_at or now + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
    try:
        with transaction.atomic():
            return CreditHold.objects.create(
                account_id=account.pk,
                key=key,
                amount=ZERO,
                status=HoldStatus.HELD,
                unfunded=ZERO,
                api_key=api_key,
                metadata=metadata or {},
                expires_at=expires_at,
                created_at=now,
            )
    except IntegrityError:
        existing = CreditHold.objects.filter(account_id=account.pk, key=key).first()
        if existing is None:
            raise
        return _hold_replay(existing, ZERO)


def _resolve_usage(hold: CreditHold, status: str, now: datetime) -> CreditHold:
    """Resolve a hold of 0 credits (`hold_create_usage`): only its status changes. Once: a
    replay of the same resolution returns it; another resolution is an error."""
    won = _lock_hold_for_resolution(
        hold.pk, status, ZERO if status == HoldStatus.CAPTURED else None, now
    )
    if won is not None:
        # A usage record's budgets count its list price in full when it is captured.
        _budgets_resolve(won, capture=status == HoldStatus.CAPTURED, charge=None, now=now)
        return won
    current = CreditHold.objects.get(pk=hold.pk)
    released = (HoldStatus.RELEASED, HoldStatus.EXPIRED)
    if current.status == status or (status in released and current.status in released):
        return current
    verb = "captured" if status == HoldStatus.CAPTURED else "released"
    raise ValidationError(
        f"Hold {current.key!r} is already {current.status}; it cannot be {verb}.",
        errors={"hold": [f"Already {current.status}."]},
    )


def _hold_replay(hold: CreditHold, amount: Decimal) -> CreditHold:
    if hold.amount != amount:
        raise IdempotencyConflict(
            f"Hold {hold.key!r} already exists for {hold.amount} credits, not {amount}."
        )
    return hold


def _insufficient(account_id: int, amount: Decimal) -> InsufficientCredits:
    acct = CreditAccount.objects.get(pk=account_id)
    return InsufficientCredits(
        f"{amount} credits needed, {acct.available} available"
        + (f" (overage allowance {acct.overage_limit})." if acct.overage_limit else "."),
        required=str(amount),
        available=str(acct.available),
        overage_cap=str(acct.overage_limit),
    )


def _lock_hold_for_resolution(
    hold_id: int, status: str, captured: Decimal | None, now: datetime
) -> CreditHold | None:
    """Conditionally move a hold out of `held`. Exactly one resolver wins."""
    updated = CreditHold.objects.filter(pk=hold_id, status=HoldStatus.HELD).update(
        status=status, captured_amount=captured, resolved_at=now
    )
    return CreditHold.objects.get(pk=hold_id) if updated else None


def _budgets_resolve(
    hold: CreditHold, *, capture: bool, charge: Decimal | None, now: datetime
) -> None:
    """Resolve what the hold reserved on budgets (`credits.budgets`); called by the path that
    won the hold's status change. A hold that reserved none (no `budgets` in its metadata)
    costs no query."""
    if (hold.metadata or {}).get("budgets"):
        budgets.resolve(hold_id=hold.pk, capture=capture, charge=charge, now=now)


# What a hold took, in the order a release gives it back: the unfunded part first, then the
# grants in reverse burn-down order (the last grant drawn gets its credits back first).
# Unfunded rows join no grant: NULL priority sorts last, so first once reversed.
_HOLD_DRAWN_SQL = f"""
SELECT t.grant_id, t.amount FROM (
    SELECT al.grant_id, al.amount FROM {ALLOC} al JOIN {ENTRY} en ON en.id = al.entry_id
    WHERE en.hold_id = %s AND en.kind = 'hold'
) t LEFT JOIN {GRANT} ON {GRANT}.id = t.grant_id
ORDER BY {BURN_DOWN_SQL}
"""


def _give_back(
    hold: CreditHold, amount: Decimal, now: datetime, *, reason: str, actor=None
) -> None:
    """Release `amount` of a hold: held −= amount and the grants get back what the hold took,
    the unfunded part first, then in reverse burn-down order. Caller resolved the hold."""
    posted = move_account(hold.account_id, balance_delta=ZERO, held_delta=-amount, now=now)
    left = amount
    moves: Moves = []
    for grant_id, drawn in reversed(execute(_HOLD_DRAWN_SQL, [hold.pk])):
        if left <= 0:
            break
        back = min(-to_credits(drawn), left)
        moves.append((grant_id, back))
        left -= back
    add_to_grants(moves)
    entry = entry_write(
        hold.account_id,
        posted,
        kind=EntryKind.RELEASE,
        amount=amount,
        balance_delta=ZERO,
        held_delta=-amount,
        key=f"release:{hold.key}",
        now=now,
        hold_id=hold.pk,
        actor=actor,
        reason=reason,
    )
    allocate(entry, moves)
    # Credits given back to a grant whose time has passed expire at once.
    given_to = [grant_id for grant_id, _ in moves if grant_id is not None]
    past = set(
        CreditGrant.objects.filter(pk__in=given_to, expires_at__lte=now).values_list(
            "pk", flat=True
        )
    )
    for grant_id in given_to:
        if grant_id in past:
            expire_grant_rest(grant_id, now=now)


# A full capture is one statement (atomic on its own): flip the hold (only if still held; this
# row lock comes first), post the account, write the entry.
_CAPTURE_SQL = f"""
WITH h AS (
    UPDATE {HOLD} SET status = 'captured', captured_amount = amount, resolved_at = %(now)s
    WHERE id = %(hold)s AND status = 'held'
    RETURNING id, account_id, key, amount, unfunded, api_key_id, metadata, expires_at,
              created_at
),
a AS (
    UPDATE {ACCOUNT} AS acc
    SET balance = acc.balance - h.amount, held = acc.held - h.amount,
        version = acc.version + 1, updated_at = %(now)s
    FROM h WHERE acc.id = h.account_id
    RETURNING acc.id, acc.balance, acc.held, acc.version
),
e AS (
    {ENTRY_INSERT}
    SELECT a.id, a.version, 'capture', h.amount, -h.amount, -h.amount, a.balance, a.held,
           NULL, h.id, 'capture:' || h.key, %(actor)s,
           LEFT(COALESCE(h.metadata ->> 'description', ''), 500), %(now)s
    FROM a, h
    RETURNING id
)
SELECT h.id, h.account_id, h.key, h.amount, h.unfunded, h.api_key_id, h.metadata::text,
       h.expires_at, h.created_at
FROM h, e
"""


def _capture_full(hold_id: int, *, now: datetime, actor) -> CreditHold | None:
    row = fetchone(_CAPTURE_SQL, {"hold": hold_id, "now": now, "actor": actor_id(actor)})
    if row is None:
        return None
    pk, account_id, key, amount, unfunded, api_key_id, metadata, expires_at, created_at = row
    amount = to_credits(amount)
    return CreditHold(
        pk=pk,
        account_id=account_id,
        key=key,
        amount=amount,
        status=HoldStatus.CAPTURED,
        captured_amount=amount,
        unfunded=to_credits(unfunded),
        api_key_id=api_key_id,
        metadata=json.loads(metadata),
        expires_at=expires_at,
        created_at=created_at,
        resolved_at=now,
    )


def hold_capture(
    *,
    hold: CreditHold,
    amount=None,
    actor=None,
    now: datetime | None = None,
) -> CreditHold:
    """Charge a hold: all of it, or `amount` ≤ held (the rest is released). Once: a replay
    of the same capture returns the hold; capturing a released hold is an error."""
    now = now_or(now)
    held_amount = hold.amount
    if held_amount == 0:  # a usage record (`hold_create_usage`): nothing to post
        if amount is not None and parse_credits(amount, field="amount", allow_zero=True) != 0:
            raise ValidationError(
                f"Cannot capture {amount}: the hold is for 0.",
                errors={"amount": ["More than held."]},
            )
        return _resolve_usage(hold, HoldStatus.CAPTURED, now)
    charge = held_amount if amount is None else parse_credits(amount, field="amount")
    if charge > held_amount:
        raise ValidationError(
            f"Cannot capture {charge}: the hold is for {held_amount}.",
            errors={"amount": ["More than held."]},
        )
    if charge == held_amount:
        captured = _capture_full(hold.pk, now=now, actor=actor)
        if captured is not None:
            _budgets_resolve(captured, capture=True, charge=charge, now=now)
            return captured
        # Not held any more: the path below tells a replay from an error.
    # A partial capture (or a full one that found the hold resolved): resolve the hold, give
    # the rest back, then post the charge.
    with transaction.atomic():
        won = _lock_hold_for_resolution(hold.pk, HoldStatus.CAPTURED, charge, now)
        if won is None:
            current = CreditHold.objects.get(pk=hold.pk)
            if current.status == HoldStatus.CAPTURED and current.captured_amount == charge:
                return current
            raise ValidationError(
                f"Hold {current.key!r} is already {current.status}; it cannot be captured.",
                errors={"hold": [f"Already {current.status}."]},
            )
        if charge < held_amount:
            _give_back(won, held_amount - charge, now, reason="partial capture", actor=actor)
        _budgets_resolve(won, capture=True, charge=charge, now=now)
        posted = move_account(won.account_id, balance_delta=-charge, held_delta=-charge, now=now)
        entry_write(
            won.account_id,
            posted,
            kind=EntryKind.CAPTURE,
            amount=charge,
            balance_delta=-charge,
            held_delta=-charge,
            key=f"capture:{won.key}",
            now=now,
            hold_id=won.pk,
            actor=actor,
            reason=won.metadata.get("description", ""),
        )
        return won


def hold_release(
    *,
    hold: CreditHold,
    reason: str = "released",
    actor=None,
    expired: bool = False,
    now: datetime | None = None,
) -> CreditHold:
    """Give a hold back in full (job failed through no fault of the customer, cancelled, or
    stale). Once: a replay returns the hold; releasing a captured hold is an error."""
    now = now_or(now)
    status = HoldStatus.EXPIRED if expired else HoldStatus.RELEASED
    if hold.amount == 0:  # a usage record (`hold_create_usage`): nothing to give back
        return _resolve_usage(hold, status, now)
    with transaction.atomic():
        won = _lock_hold_for_resolution(hold.pk, status, None, now)
        if won is None:
            current = CreditHold.objects.get(pk=hold.pk)
            if current.status in (HoldStatus.RELEASED, HoldStatus.EXPIRED):
                return current
            raise ValidationError(
                f"Hold {current.key!r} is already {current.status}; it cannot be released.",
                errors={"hold": [f"Already {current.status}."]},
            )
        _give_back(won, won.amount, now, reason=reason, actor=actor)
        _budgets_resolve(won, capture=False, charge=None, now=now)
        return won


def hold_extend(*, hold: CreditHold, until: datetime) -> bool:
    """Keep an open hold from being swept as stale before `until` (a job that is still alive:
    requeued after a lost worker, or starting another attempt). Moves no credits; the expiry
    only ever moves later. False when the hold is no longer held. A fixed statement (the
    ledger's `execute`): every claim of a job runs it."""
    return fetchone(_EXTEND_SQL, [until, hold.pk, HoldStatus.HELD.value]) is not None


_EXTEND_SQL = (
    f"UPDATE {HOLD} SET expires_at = GREATEST(expires_at, %s) "
    "WHERE id = %s AND status = %s RETURNING id"
)
