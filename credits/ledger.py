"""The only module that moves credits.

Rules it keeps (TigerBeetle / pgledger style, on PostgreSQL):

* No read-modify-write of a balance in Python: every movement is one conditional
  ``UPDATE credits_creditaccount … RETURNING`` whose row lock serializes the account.
  A hold succeeds only ``WHERE balance - held - x >= -overage_limit``.
* Locks are taken in one order: hold row → account row → grant rows. Nothing that holds an
  account lock waits for a hold row, so operations on one account cannot deadlock.
* Holds are two-phase transfers: a hold raises ``held`` and draws from grants in burn-down
  order (the part no grant covers is *unfunded*: overage); capture posts it (balance −= x)
  and may charge less than held (the rest is released); release gives back exactly what the
  hold took. A hold resolves once: its status changes by a conditional UPDATE.
* Entries and allocations are append-only (a database trigger refuses UPDATE/DELETE).
* Every movement carries an idempotency key, unique per account; replaying it returns the
  first result and moves nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Organization
from config.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    ValidationError,
)
from credits.models import (
    DEFAULT_PRIORITY,
    CreditAccount,
    CreditGrant,
    CreditHold,
    EntryAllocation,
    EntryKind,
    GrantSource,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)
from credits.money import parse_credits, to_credits

ZERO = Decimal(0)

ACCOUNT = CreditAccount._meta.db_table
GRANT = CreditGrant._meta.db_table
HOLD = CreditHold._meta.db_table
ENTRY = LedgerEntry._meta.db_table
ALLOC = EntryAllocation._meta.db_table

# Burn-down order, as SQL: lower priority, earliest expiry (never-expiring last), oldest.
BURN_DOWN_SQL = "priority, (expires_at IS NULL), expires_at, created_at, id"


@dataclass(frozen=True)
class _Posted:
    balance: Decimal
    held: Decimal
    version: int


# --- Accounts ---------------------------------------------------------------------------------


def account_get_or_create(*, organization: Organization) -> CreditAccount:
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return CreditAccount.objects.create(organization=organization)
    except IntegrityError:
        return CreditAccount.objects.get(organization=organization)


def account_set_overage_limit(*, account: CreditAccount, overage_limit: Decimal) -> None:
    """The floor below zero `available` may reach (the plan's overage cap; 0 = hard stop)."""
    limit = parse_credits(overage_limit, field="overage_limit", allow_zero=True)
    CreditAccount.objects.filter(pk=account.pk).update(overage_limit=limit)
    account.overage_limit = limit


# --- Primitives -------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def _ts(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


def _fetchone(sql: str, params):
    """Run one statement of the hot path and return its first row.

    On PostgreSQL the statement is prepared on the connection (server-side binding), so the
    planner runs once per connection instead of on every call — the hold statement spends as
    long in planning as in execution otherwise. Errors are Django's (IntegrityError…).
    """
    if connection.vendor == "postgresql" and settings.CREDITS_PREPARED_STATEMENTS:
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchone()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _move_account(
    account_id: int,
    *,
    balance_delta: Decimal,
    held_delta: Decimal,
    now: datetime,
    require_available: Decimal | None = None,
) -> _Posted | None:
    """The one statement that changes an account. With `require_available`, it only applies
    when `available - x >= -overage_limit` (None: the condition failed)."""
    sql = (
        f"UPDATE {ACCOUNT} SET balance = balance + %s, held = held + %s, "
        f"version = version + 1, updated_at = %s WHERE id = %s"
    )
    params: list = [balance_delta, held_delta, _ts(now), account_id]
    if require_available is not None:
        sql += " AND balance - held - CAST(%s AS NUMERIC) >= -overage_limit"
        params.append(require_available)
    sql += " RETURNING balance, held, version"
    row = _fetchone(sql, params)
    if row is None:
        return None
    return _Posted(to_credits(row[0]), to_credits(row[1]), int(row[2]))


def _entry(
    account_id: int,
    posted: _Posted,
    *,
    kind: str,
    amount: Decimal,
    balance_delta: Decimal,
    held_delta: Decimal,
    key: str,
    now: datetime,
    grant_id: int | None = None,
    hold_id: int | None = None,
    actor=None,
    reason: str = "",
) -> LedgerEntry:
    return LedgerEntry.objects.create(
        account_id=account_id,
        sequence=posted.version,
        kind=kind,
        amount=amount,
        balance_delta=balance_delta,
        held_delta=held_delta,
        balance_after=posted.balance,
        held_after=posted.held,
        grant_id=grant_id,
        hold_id=hold_id,
        idempotency_key=key,
        actor=actor if actor is not None and actor.is_authenticated else None,
        reason=reason[:500],
        created_at=now,
    )


def _allocate(entry: LedgerEntry, moves: list[tuple[int | None, Decimal]]) -> None:
    rows = [
        EntryAllocation(entry=entry, account_id=entry.account_id, grant_id=g, amount=a)
        for g, a in moves
        if a != 0
    ]
    if rows:
        EntryAllocation.objects.bulk_create(rows)


def _draw(account_id: int, amount: Decimal, now: datetime) -> list[tuple[int | None, Decimal]]:
    """Take `amount` from the account's live grants in burn-down order, in one statement.
    Returns [(grant_id, -taken), …, (None, -unfunded)]. Caller holds the account lock."""
    ordered = f"""
        WITH ordered AS (
            SELECT id, remaining,
                   SUM(remaining) OVER (ORDER BY {BURN_DOWN_SQL}
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
            FROM {GRANT}
            WHERE account_id = %s AND remaining > 0 AND (expires_at IS NULL OR expires_at > %s)
        ),
        take AS (
            SELECT id, CASE WHEN cum <= CAST(%s AS NUMERIC) THEN remaining
                            ELSE CAST(%s AS NUMERIC) - (cum - remaining) END AS take
            FROM ordered WHERE cum - remaining < CAST(%s AS NUMERIC)
        )"""
    params = [account_id, _ts(now), amount, amount, amount]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                ordered
                + f"""
                UPDATE {GRANT} AS g SET remaining = g.remaining - take.take
                FROM take WHERE g.id = take.id
                RETURNING g.id, take.take""",
                params,
            )
            taken = [(gid, to_credits(t)) for gid, t in cursor.fetchall()]
        else:  # SQLite (make run): same plan, two statements (RETURNING can't see FROM).
            cursor.execute(ordered + " SELECT id, take FROM take", params)
            taken = [(gid, to_credits(t)) for gid, t in cursor.fetchall()]
            _add_to_grants(cursor, [(gid, -t) for gid, t in taken])
    moves: list[tuple[int | None, Decimal]] = [(gid, -t) for gid, t in taken]
    unfunded = amount - sum((t for _, t in taken), ZERO)
    if unfunded > 0:
        moves.append((None, -unfunded))
    return moves


def _add_to_grants(cursor, moves: list[tuple[int | None, Decimal]]) -> None:
    """remaining += delta for each (grant, delta), in one UPDATE."""
    moves = [(g, d) for g, d in moves if g is not None and d != 0]
    if not moves:
        return
    cases = " ".join("WHEN %s THEN %s" for _ in moves)
    params: list = []
    for g, d in moves:
        params += [g, d]
    ids = [g for g, _ in moves]
    cursor.execute(
        f"UPDATE {GRANT} SET remaining = remaining + CASE id {cases} END "
        f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
        params + ids,
    )


def _replayed(account_id: int, key: str, *, kind: str, amount: Decimal | None) -> LedgerEntry:
    """The entry an idempotency key already produced; conflict if it was a different move."""
    entry = LedgerEntry.objects.filter(account_id=account_id, idempotency_key=key).first()
    if entry is None:
        raise LookupError(key)
    if entry.kind != kind or (amount is not None and entry.amount != abs(amount)):
        raise IdempotencyConflict(
            f"Idempotency key {key!r} was already used for a {entry.kind} of {entry.amount}."
        )
    return entry


# --- Grants -----------------------------------------------------------------------------------


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
    now = _now(now)
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
            posted = _move_account(account.pk, balance_delta=amount, held_delta=ZERO, now=now)
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
            entry = _entry(
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
            _allocate(entry, [(grant.pk, amount)])
            return grant
    except IntegrityError:
        try:
            entry = _replayed(account.pk, idempotency_key, kind=kind, amount=amount)
        except LookupError:
            raise
        return entry.grant


def _expire_grant_rest(grant_id: int, *, now: datetime) -> LedgerEntry | None:
    """Post an expiry for whatever the grant still holds. Caller holds the account lock."""
    grant = CreditGrant.objects.get(pk=grant_id)
    if grant.remaining <= 0:
        return None
    rest = grant.remaining
    posted = _move_account(grant.account_id, balance_delta=-rest, held_delta=ZERO, now=now)
    with connection.cursor() as cursor:
        _add_to_grants(cursor, [(grant.pk, -rest)])
    CreditGrant.objects.filter(pk=grant.pk).update(expired_at=now)
    entry = _entry(
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
    _allocate(entry, [(grant.pk, -rest)])
    return entry


def grant_expire(*, grant_id: int, now: datetime | None = None) -> LedgerEntry | None:
    """Expire the unspent rest of a grant whose time has come. Idempotent: a second call finds
    nothing left."""
    now = _now(now)
    with transaction.atomic():
        account_id = CreditGrant.objects.values_list("account_id", flat=True).get(pk=grant_id)
        # Lock order: account, then grant.
        CreditAccount.objects.select_for_update().filter(pk=account_id).first()
        grant = CreditGrant.objects.get(pk=grant_id)
        if grant.expires_at is None or grant.expires_at > now or grant.remaining <= 0:
            return None
        return _expire_grant_rest(grant.pk, now=now)


def grants_expire_due(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Expire every grant past its expiry that still holds credits (beat task). Each grant in
    its own short transaction; re-running finds nothing left to do."""
    now = _now(now)
    due = (
        CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0)
        .order_by("expires_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for grant_id in list(due) if grant_expire(grant_id=grant_id, now=now))


# --- Holds ------------------------------------------------------------------------------------


# PostgreSQL: after the account UPDATE has taken the lock, one statement draws the grants in
# burn-down order and writes the hold, its entry and its allocations (data-modifying CTEs).
# Its snapshot is taken after the lock, so it sees every committed change to the grants.
_PG_HOLD_SQL = f"""
WITH ordered AS (
    SELECT id, remaining,
           SUM(remaining) OVER (ORDER BY {BURN_DOWN_SQL}
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
    FROM {GRANT}
    WHERE account_id = %(account)s AND remaining > 0
      AND (expires_at IS NULL OR expires_at > %(now)s)
),
take AS (
    SELECT id, CASE WHEN cum <= %(amount)s THEN remaining
                    ELSE %(amount)s - (cum - remaining) END AS take
    FROM ordered WHERE cum - remaining < %(amount)s
),
drawn AS (
    UPDATE {GRANT} AS g SET remaining = g.remaining - take.take
    FROM take WHERE g.id = take.id
    RETURNING g.id, take.take
),
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
    INSERT INTO {ENTRY} (account_id, sequence, kind, amount, balance_delta, held_delta,
                         balance_after, held_after, grant_id, hold_id, idempotency_key,
                         actor_id, reason, created_at)
    SELECT %(account)s, %(sequence)s, 'hold', %(amount)s, 0, %(amount)s, %(balance)s,
           %(held)s, NULL, h.id, %(entry_key)s, NULL, %(reason)s, %(now)s
    FROM h
    RETURNING id
),
allocated AS (
    INSERT INTO {ALLOC} (entry_id, account_id, grant_id, amount)
    SELECT e.id, %(account)s, drawn.id, -drawn.take FROM e, drawn
    UNION ALL
    SELECT e.id, %(account)s, NULL, -h.unfunded FROM e, h WHERE h.unfunded > 0
)
SELECT h.id, h.unfunded FROM h
"""


def _pg_hold_draw_and_record(
    account_id: int,
    posted: _Posted,
    *,
    amount: Decimal,
    key: str,
    now: datetime,
    expires_at: datetime,
    api_key,
    metadata: dict,
) -> CreditHold:
    hold_id, unfunded = _fetchone(
        _PG_HOLD_SQL,
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
) -> CreditHold:
    """Reserve `amount` (a pending debit). InsufficientCredits when available credits plus the
    overage allowance don't cover it. Replaying `key` returns the existing hold."""
    amount = parse_credits(amount)
    if not key:
        raise ValidationError("A hold needs a key (e.g. the job id).")
    now = _now(now)
    expires_at = expires_at or now + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
    try:
        with transaction.atomic():
            posted = _move_account(
                account.pk,
                balance_delta=ZERO,
                held_delta=amount,
                now=now,
                require_available=amount,
            )
            if posted is None:
                existing = CreditHold.objects.filter(account_id=account.pk, key=key).first()
                if existing is not None:
                    return _hold_replay(existing, amount)
                if not CreditAccount.objects.filter(pk=account.pk).exists():
                    raise NotFound("No such credit account.")
                raise _insufficient(account.pk, amount)
            if connection.vendor == "postgresql":
                return _pg_hold_draw_and_record(
                    account.pk,
                    posted,
                    amount=amount,
                    key=key,
                    now=now,
                    expires_at=expires_at,
                    api_key=api_key,
                    metadata=metadata or {},
                )
            moves = _draw(account.pk, amount, now)
            unfunded = -sum((a for g, a in moves if g is None), ZERO)
            hold = CreditHold.objects.create(
                account_id=account.pk,
                key=key,
                amount=amount,
                unfunded=unfunded,
                api_key=api_key,
                metadata=metadata or {},
                expires_at=expires_at,
                created_at=now,
            )
            entry = _entry(
                account.pk,
                posted,
                kind=EntryKind.HOLD,
                amount=amount,
                balance_delta=ZERO,
                held_delta=amount,
                key=f"hold:{key}",
                now=now,
                hold_id=hold.pk,
                reason=(metadata or {}).get("description", ""),
            )
            _allocate(entry, moves)
            return hold
    except IntegrityError:
        existing = CreditHold.objects.filter(account_id=account.pk, key=key).first()
        if existing is None:
            raise
        return _hold_replay(existing, amount)


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


def _give_back(
    hold: CreditHold, amount: Decimal, now: datetime, *, reason: str, actor=None
) -> LedgerEntry:
    """Release `amount` of a hold: held −= amount and the grants get back what the hold took,
    the unfunded part first, then in reverse burn-down order. Caller resolved the hold."""
    posted = _move_account(hold.account_id, balance_delta=ZERO, held_delta=-amount, now=now)
    taken = list(
        EntryAllocation.objects.filter(entry__hold_id=hold.pk, entry__kind=EntryKind.HOLD)
        .select_related("grant")
        .values_list(
            "grant_id", "amount", "grant__priority", "grant__expires_at", "grant__created_at"
        )
    )
    # Unfunded first, then reverse burn-down (the last grant drawn gets its credits back first).
    far_future = datetime.max.replace(tzinfo=UTC)
    funded = sorted(
        (r for r in taken if r[0] is not None),
        key=lambda r: (r[2], r[3] is None, r[3] or far_future, r[4], r[0]),
        reverse=True,
    )
    order = [r for r in taken if r[0] is None] + funded
    left = amount
    moves: list[tuple[int | None, Decimal]] = []
    for grant_id, drawn, *_ in order:
        if left <= 0:
            break
        back = min(-drawn, left)
        moves.append((grant_id, back))
        left -= back
    with connection.cursor() as cursor:
        _add_to_grants(cursor, moves)
    entry = _entry(
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
    _allocate(entry, moves)
    # Credits given back to a grant whose time has passed expire at once.
    for grant_id, _ in moves:
        if grant_id is not None:
            grant = CreditGrant.objects.only("expires_at").get(pk=grant_id)
            if grant.expires_at is not None and grant.expires_at <= now:
                _expire_grant_rest(grant_id, now=now)
    return entry


# PostgreSQL: a full capture is one statement (atomic on its own): flip the hold (only if still
# held; this row lock comes first), post the account, write the entry.
_PG_CAPTURE_SQL = f"""
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
    INSERT INTO {ENTRY} (account_id, sequence, kind, amount, balance_delta, held_delta,
                         balance_after, held_after, grant_id, hold_id, idempotency_key,
                         actor_id, reason, created_at)
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


def _pg_capture_full(hold_id: int, *, now: datetime, actor) -> CreditHold | None:
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    row = _fetchone(_PG_CAPTURE_SQL, {"hold": hold_id, "now": now, "actor": actor_id})
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
    now = _now(now)
    held_amount = hold.amount
    charge = held_amount if amount is None else parse_credits(amount, field="amount")
    if charge > held_amount:
        raise ValidationError(
            f"Cannot capture {charge}: the hold is for {held_amount}.",
            errors={"amount": ["More than held."]},
        )
    if charge == held_amount and connection.vendor == "postgresql":
        captured = _pg_capture_full(hold.pk, now=now, actor=actor)
        if captured is not None:
            return captured
        # Not held any more: the general path below tells a replay from an error.
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
        posted = _move_account(won.account_id, balance_delta=-charge, held_delta=-charge, now=now)
        _entry(
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
    now = _now(now)
    status = HoldStatus.EXPIRED if expired else HoldStatus.RELEASED
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
        return won


def holds_release_stale(*, now: datetime | None = None, limit: int = 10_000) -> int:
    """Release holds past their expiry (jobs stuck past the timeout). Beat task; idempotent."""
    now = _now(now)
    stale = list(
        CreditHold.objects.filter(status=HoldStatus.HELD, expires_at__lte=now).order_by(
            "expires_at", "id"
        )[:limit]
    )
    done = 0
    for hold in stale:
        try:
            hold_release(hold=hold, reason="hold expired", expired=True, now=now)
            done += 1
        except ValidationError:
            continue  # resolved meanwhile
    return done


# --- Adjustments, overage ---------------------------------------------------------------------


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
    now = _now(now)
    debit = -amount
    try:
        with transaction.atomic():
            posted = _move_account(account.pk, balance_delta=amount, held_delta=ZERO, now=now)
            if posted is None:
                raise NotFound("No such credit account.")
            moves = _draw(account.pk, debit, now)
            entry = _entry(
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
            _allocate(entry, moves)
            return entry
    except IntegrityError:
        return _replayed(account.pk, idempotency_key, kind=EntryKind.ADJUSTMENT, amount=debit)


def unfunded_outstanding(*, account: CreditAccount) -> Decimal:
    """Credits spent or held beyond every grant and not yet settled."""
    total = EntryAllocation.objects.filter(account_id=account.pk, grant__isnull=True).aggregate(
        s=Sum("amount")
    )["s"]
    return -(total or ZERO)


def overage_billable(*, account: CreditAccount) -> Decimal:
    """Captured unfunded credits not yet on an overage record: what a period close bills."""
    open_holds = CreditHold.objects.filter(account_id=account.pk, status=HoldStatus.HELD)
    held_unfunded = open_holds.aggregate(s=Sum("unfunded"))["s"] or ZERO
    unsettled = (
        OverageRecord.objects.filter(account_id=account.pk)
        # Paid records were settled by an entry; the others (open, invoiced, or void: forgiven)
        # must not be billed again.
        .exclude(status=OverageStatus.PAID)
        .aggregate(s=Sum("credits"))["s"]
        or ZERO
    )
    return max(ZERO, unfunded_outstanding(account=account) - held_unfunded - unsettled)


def overage_settle(
    *, record: OverageRecord, actor=None, now: datetime | None = None, reason: str = ""
) -> LedgerEntry:
    """The overage invoice was paid: the debt leaves the account (balance += credits)."""
    now = _now(now)
    key = f"overage:{record.pk}"
    try:
        with transaction.atomic():
            record = OverageRecord.objects.select_for_update().get(pk=record.pk)
            if record.settlement_entry_id:
                return record.settlement_entry
            if record.status == OverageStatus.VOID:
                raise ValidationError("A void overage record cannot be settled.")
            posted = _move_account(
                record.account_id, balance_delta=record.credits, held_delta=ZERO, now=now
            )
            entry = _entry(
                record.account_id,
                posted,
                kind=EntryKind.OVERAGE,
                amount=record.credits,
                balance_delta=record.credits,
                held_delta=ZERO,
                key=key,
                now=now,
                actor=actor,
                reason=reason or f"overage of {record.period_start:%Y-%m-%d} period paid",
            )
            _allocate(entry, [(None, record.credits)])
            record.status = OverageStatus.PAID
            record.settlement_entry = entry
            record.save(update_fields=["status", "settlement_entry", "updated_at"])
            return entry
    except IntegrityError:
        return _replayed(record.account_id, key, kind=EntryKind.OVERAGE, amount=record.credits)


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
    now = _now(now)
    try:
        with transaction.atomic():
            posted = _move_account(
                grant.account_id, balance_delta=-amount, held_delta=ZERO, now=now
            )
            if posted is None:
                raise NotFound("No such credit account.")
            # The account row is locked: the grant's `remaining` can't move under us.
            remaining = to_credits(
                CreditGrant.objects.values_list("remaining", flat=True).get(pk=grant.pk)
            )
            taken = min(amount, remaining)
            moves: list[tuple[int | None, Decimal]] = []
            if taken > 0:
                moves.append((grant.pk, -taken))
                with connection.cursor() as cursor:
                    _add_to_grants(cursor, moves)
            if amount > taken:
                moves.append((None, -(amount - taken)))
            entry = _entry(
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
            _allocate(entry, moves)
            return entry
    except IntegrityError:
        return _replayed(
            grant.account_id, idempotency_key, kind=EntryKind.ADJUSTMENT, amount=amount
        )
