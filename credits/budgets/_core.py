"""The only code that changes a budget's `used` and `reserved` (like `credits.ledger` for the
account): one conditional UPDATE per step, each period-aware in SQL.

* `reserve` — at acceptance, inside `spend_authorize` (which holds the account's row lock, so
  one organization's reservations are serialized): every applicable budget gets
  ``reserved += x`` only ``WHERE used + reserved + x <= amount``; a budget that matched no row
  is the refusal.
* `record` — the reservations of the new hold, one HoldBudget row per budget.
* `resolve` — when the hold resolves (capture, release, expiry; `credits.ledger.holds` calls
  it from the one path that wins the hold's status change, so exactly once): the hold's open
  HoldBudget rows are closed and their budgets get ``reserved -= x`` and ``used += captured``.

Lock order: hold row → account row → grant rows → budget rows (budgets are always last).
A budget's window (`window_start`) is the current UTC day / ISO week / month, or the epoch for a
hard total; a statement that sees a newer window starts `used` from 0 (lazy reset, no cron).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from accounts.models import TeamMembership
from credits.budgets.models import Budget, HoldBudget
from credits.ledger._core import execute

BUDGET = Budget._meta.db_table
HOLD_BUDGET = HoldBudget._meta.db_table
TEAM_MEMBER = TeamMembership._meta.db_table

# The budget's current window at %(now)s, and its `used` in that window (0 once it rolled).
WINDOW_SQL = (
    "(CASE b.period WHEN 'total' THEN TIMESTAMPTZ '1970-01-01 00:00:00+00' "
    "ELSE date_trunc(b.period, %(now)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END)"
)
USED_NOW_SQL = f"(CASE WHEN b.window_start = {WINDOW_SQL} THEN b.used ELSE 0 END)"

# The budgets that apply to a submission: the API key's, the member's and the member's teams'
# (the member is the signed-in user, or the key's creator for an API key).
_APPLICABLE_SQL = f"""
SELECT b.id, b.alerted_window FROM {BUDGET} b
WHERE b.organization_id = %(org)s AND (
    (b.scope = 'key' AND b.api_key_id = %(key)s)
    OR (b.scope = 'member' AND b.user_id = %(user)s)
    OR (b.scope = 'team' AND b.team_id IN (
        SELECT tm.team_id FROM {TEAM_MEMBER} tm WHERE tm.user_id = %(user)s))
)
"""

_RESERVE_SQL = f"""
WITH applicable AS ({_APPLICABLE_SQL}),
reserved AS (
    UPDATE {BUDGET} b SET
        used = {USED_NOW_SQL},
        window_start = {WINDOW_SQL},
        reserved = b.reserved + %(amount)s::numeric,
        alerted_window = CASE
            WHEN b.alert_percent IS NOT NULL
                 AND {USED_NOW_SQL} + b.reserved + %(amount)s::numeric
                     >= b.amount * b.alert_percent / 100
            THEN {WINDOW_SQL} ELSE b.alerted_window END,
        updated_at = %(now)s::timestamptz
    FROM applicable a
    WHERE b.id = a.id AND {USED_NOW_SQL} + b.reserved + %(amount)s::numeric <= b.amount
    RETURNING b.id, b.alerted_window
)
SELECT a.id, r.id IS NOT NULL, r.alerted_window IS DISTINCT FROM a.alerted_window
FROM applicable a LEFT JOIN reserved r ON r.id = a.id
ORDER BY a.id
"""


def reserve(
    *, organization_id: int, api_key_id: int | None, user_id: int | None, amount: Decimal, now
) -> tuple[list[int], list[int], list[int]]:
    """Reserve `amount` on every applicable budget. Returns (reserved ids, refused ids, ids
    whose alert threshold this reservation crossed). One statement; the caller refuses (and
    rolls back) when any budget refused."""
    rows = execute(
        _RESERVE_SQL,
        {
            "org": organization_id,
            "key": api_key_id,
            "user": user_id,
            "amount": amount,
            "now": now,
        },
    )
    reserved = [pk for pk, ok, _ in rows if ok]
    refused = [pk for pk, ok, _ in rows if not ok]
    alerted = [pk for pk, ok, crossed in rows if ok and crossed]
    return reserved, refused, alerted


_RECORD_SQL = f"""
INSERT INTO {HOLD_BUDGET} (hold_id, budget_id, amount, captured, created_at, resolved_at)
SELECT %(hold)s, unnest(%(budgets)s::bigint[]), %(amount)s::numeric, NULL, %(now)s, NULL
ON CONFLICT (hold_id, budget_id) DO NOTHING
"""


def record(*, hold_id: int, budget_ids: list[int], amount: Decimal, now: datetime) -> None:
    if budget_ids:
        execute(_RECORD_SQL, {"hold": hold_id, "budgets": budget_ids, "amount": amount, "now": now})


_RESOLVE_SQL = f"""
WITH r AS (
    UPDATE {HOLD_BUDGET} SET resolved_at = %(now)s::timestamptz,
        captured = CASE WHEN %(capture)s::boolean
                        THEN LEAST(amount, COALESCE(%(charge)s::numeric, amount)) ELSE 0 END
    WHERE hold_id = %(hold)s AND resolved_at IS NULL
    RETURNING budget_id, amount, captured
)
UPDATE {BUDGET} b SET
    reserved = b.reserved - r.amount,
    used = {USED_NOW_SQL} + r.captured,
    window_start = {WINDOW_SQL},
    updated_at = %(now)s::timestamptz
FROM r WHERE b.id = r.budget_id
"""


def resolve(*, hold_id: int, capture: bool, charge: Decimal | None, now: datetime) -> None:
    """Close a hold's budget reservations: a capture counts `charge` (None: all it reserved),
    a release counts nothing. Idempotent (only open rows are closed)."""
    execute(
        _RESOLVE_SQL,
        {"hold": hold_id, "capture": capture, "charge": charge, "now": now},
    )
