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

One module per part (`periods`, `spend`, `staff`, `holds`); callers import from
`credits.services`.
"""

from credits.contract_terms import contract_change, overage_limit_for, overage_price_for
from credits.services.holds import (
    account_lock,
    hold_capture,
    hold_extend,
    hold_release,
    usage_charge,
)
from credits.services.periods import (
    account_for,
    grants_expire_due,
    holds_release_stale,
    overage_close,
    period_open,
    subscriptions_renew_due,
)
from credits.services.spend import (
    FAIR_USE_TIME_FORMAT,
    fair_use_start,
    spend_authorize,
)
from credits.services.staff import (
    account_adjust,
    hold_release_by_staff,
    organization_grant,
    organization_grant_in_transaction,
    overage_settle,
)

__all__ = [
    "FAIR_USE_TIME_FORMAT",
    "account_adjust",
    "account_for",
    "account_lock",
    "contract_change",
    "fair_use_start",
    "grants_expire_due",
    "hold_capture",
    "hold_extend",
    "hold_release",
    "hold_release_by_staff",
    "holds_release_stale",
    "organization_grant",
    "organization_grant_in_transaction",
    "overage_close",
    "overage_limit_for",
    "overage_price_for",
    "overage_settle",
    "period_open",
    "spend_authorize",
    "subscriptions_renew_due",
    "usage_charge",
]
