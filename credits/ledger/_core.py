"""What every movement of the ledger is made of: the one statement that changes an account, the
one LedgerEntry insert, the one allocation insert, the burn-down order and the draw from grants
in that order, and the idempotency-key replay lookup.

Private to `credits.ledger` (only `bench/ledger.py` borrows the two inserts for its set-based
fixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import psycopg
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.errors import IdempotencyConflict
from credits.models import CreditAccount, CreditGrant, CreditHold, EntryAllocation, LedgerEntry
from credits.money import to_credits

ZERO = Decimal(0)

ACCOUNT = CreditAccount._meta.db_table
GRANT = CreditGrant._meta.db_table
HOLD = CreditHold._meta.db_table
ENTRY = LedgerEntry._meta.db_table
ALLOC = EntryAllocation._meta.db_table

# The burn-down order, as SQL: lower priority, earliest expiry (never-expiring last), oldest.
# Holds and debits draw grants in this order; releases give back in its reverse.
# (`CreditGrant.Meta.ordering` is the same order for display.)
BURN_DOWN_SQL = "priority, (expires_at IS NULL), expires_at, created_at, id"

# The one way a LedgerEntry row is written: `entry_write` uses it with VALUES, the hold and
# full-capture fast paths (holds.py) with a SELECT from their data-modifying CTEs.
ENTRY_INSERT = f"""INSERT INTO {ENTRY} (account_id, sequence, kind, amount, balance_delta,
    held_delta, balance_after, held_after, grant_id, hold_id, idempotency_key, actor_id,
    reason, created_at)"""

# The one way EntryAllocation rows are written (by `allocate`, and by the hold fast path).
ALLOC_INSERT = f"INSERT INTO {ALLOC} (entry_id, account_id, grant_id, amount)"

# A move of grants' `remaining`: [(grant_id, signed delta), …]; grant None is the unfunded part.
Moves = list[tuple[int | None, Decimal]]


@dataclass(frozen=True)
class Posted:
    """The account row after a movement: its new balance, held and version (= the entry's
    sequence)."""

    balance: Decimal
    held: Decimal
    version: int


def now_or(now: datetime | None) -> datetime:
    return now or timezone.now()


def actor_id(actor) -> int | None:
    return actor.pk if actor is not None and actor.is_authenticated else None


def execute(sql: str, params):
    """Run one ledger statement; returns the psycopg cursor's rows (list of tuples).

    The statement is prepared on the connection (server-side binding), so the planner runs once
    per connection instead of on every call — the hold statement spends as long in planning as
    in execution otherwise. Every ledger statement has a constant text, so each is prepared
    once. Errors are Django's (IntegrityError…). CREDITS_PREPARED_STATEMENTS=false (PgBouncer
    < 1.21 in transaction mode) runs them unprepared through Django's cursor.
    """
    if settings.CREDITS_PREPARED_STATEMENTS:
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchall() if cursor.description else []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def fetchone(sql: str, params):
    rows = execute(sql, params)
    return rows[0] if rows else None


_MOVE_SQL = (
    f"UPDATE {ACCOUNT} SET balance = balance + %s, held = held + %s, "
    f"version = version + 1, updated_at = %s WHERE id = %s"
)
_MOVE_RETURNING = " RETURNING balance, held, version"
_MOVE = _MOVE_SQL + _MOVE_RETURNING
_MOVE_IF_AVAILABLE = (
    _MOVE_SQL + " AND balance - held - CAST(%s AS NUMERIC) >= -overage_limit" + _MOVE_RETURNING
)


def move_account(
    account_id: int,
    *,
    balance_delta: Decimal,
    held_delta: Decimal,
    now: datetime,
    require_available: Decimal | None = None,
) -> Posted | None:
    """The one statement that changes an account (its row lock serializes the account's
    movements). With `require_available`, it only applies when
    `available - x >= -overage_limit`. None: no such account, or the condition failed."""
    params: list = [balance_delta, held_delta, now, account_id]
    if require_available is None:
        row = fetchone(_MOVE, params)
    else:
        row = fetchone(_MOVE_IF_AVAILABLE, [*params, require_available])
    if row is None:
        return None
    return Posted(to_credits(row[0]), to_credits(row[1]), int(row[2]))


_ENTRY_VALUES = ENTRY_INSERT + " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def entry_write(
    account_id: int,
    posted: Posted,
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
    """Write the entry of a movement `move_account` just posted (its sequence is the account's
    new version). A second entry with the same key on the account is an IntegrityError."""
    values = {
        "account_id": account_id,
        "sequence": posted.version,
        "kind": str(kind),
        "amount": amount,
        "balance_delta": balance_delta,
        "held_delta": held_delta,
        "balance_after": posted.balance,
        "held_after": posted.held,
        "grant_id": grant_id,
        "hold_id": hold_id,
        "idempotency_key": key,
        "actor_id": actor_id(actor),
        "reason": reason[:500],
        "created_at": now,
    }
    (pk,) = fetchone(_ENTRY_VALUES + " RETURNING id", list(values.values()))
    entry = LedgerEntry(pk=pk, **values)
    entry._state.adding = False
    entry._state.db = connection.alias
    return entry


_ALLOCATE = (
    ALLOC_INSERT + " SELECT %s, %s, m.grant_id, m.amount"
    " FROM unnest(%s::bigint[], %s::numeric[]) AS m(grant_id, amount)"
)


def allocate(entry: LedgerEntry, moves: Moves) -> None:
    """Record how `entry` moved grants' `remaining` (one row per grant; None: unfunded)."""
    moves = [(g, a) for g, a in moves if a != 0]
    if moves:
        execute(
            _ALLOCATE,
            [entry.pk, entry.account_id, [g for g, _ in moves], [a for _, a in moves]],
        )


_ADD_TO_GRANTS = (
    f"UPDATE {GRANT} AS g SET remaining = g.remaining + m.delta"
    " FROM unnest(%s::bigint[], %s::numeric[]) AS m(id, delta) WHERE g.id = m.id"
)


def add_to_grants(moves: Moves) -> None:
    """remaining += delta for each (grant, delta) of `moves`, in one UPDATE. Caller holds the
    account lock."""
    moves = [(g, d) for g, d in moves if g is not None and d != 0]
    if moves:
        execute(_ADD_TO_GRANTS, [[g for g, _ in moves], [d for _, d in moves]])


# Take an amount from the account's live grants in burn-down order: a running sum over the
# ordered grants, then one UPDATE of the grants it reaches. Also the first half of the hold
# statement (holds.py).
DRAW_CTE = f"""
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
)"""

_DRAW = DRAW_CTE + " SELECT id, take FROM drawn"


def draw(account_id: int, amount: Decimal, now: datetime) -> Moves:
    """Take `amount` from the account's live grants in burn-down order, in one statement.
    Returns [(grant_id, -taken), …, (None, -unfunded)]. Caller holds the account lock."""
    rows = execute(_DRAW, {"account": account_id, "now": now, "amount": amount})
    moves: Moves = [(gid, -to_credits(t)) for gid, t in rows]
    unfunded = amount + sum((m for _, m in moves), ZERO)
    if unfunded > 0:
        moves.append((None, -unfunded))
    return moves


def replayed(account_id: int, key: str, *, kind: str, amount: Decimal | None) -> LedgerEntry | None:
    """The entry an idempotency key already produced (None: it produced nothing, so the
    caller's IntegrityError had another cause); conflict if it was a different move."""
    entry = LedgerEntry.objects.filter(account_id=account_id, idempotency_key=key).first()
    if entry is None:
        return None
    if entry.kind != kind or (amount is not None and entry.amount != abs(amount)):
        raise IdempotencyConflict(
            f"Idempotency key {key!r} was already used for a {entry.kind} of {entry.amount}."
        )
    return entry
