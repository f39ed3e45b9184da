"""The only code that moves credits. Private to the `credits` app (an import-linter contract
forbids importing it from anywhere else): other apps, the admin and commands call
`credits.services`, which wraps each movement with its audit row.

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

Layout, one verb per module: `_core` (the account UPDATE, the one entry insert, the one
allocation insert, the burn-down order and draw), `accounts`, `grants` (create, expire,
claw back), `holds` (create, capture, release; a hold of 0 credits is a usage record that
moves nothing and writes no entry), `adjustments`, `overage` (settle).
"""

from credits.ledger.accounts import account_get_or_create, account_set_overage_limit
from credits.ledger.adjustments import adjust
from credits.ledger.grants import grant_clawback, grant_create, grant_expire
from credits.ledger.holds import (
    hold_capture,
    hold_create,
    hold_create_usage,
    hold_extend,
    hold_release,
)
from credits.ledger.overage import overage_settle

__all__ = [
    "account_get_or_create",
    "account_set_overage_limit",
    "adjust",
    "grant_clawback",
    "grant_create",
    "grant_expire",
    "hold_capture",
    "hold_create",
    "hold_create_usage",
    "hold_extend",
    "hold_release",
    "overage_settle",
]
