"""The credits ledger: one account per organization, grants (buckets), two-phase holds and
append-only entries.

Only `credits.ledger` changes these rows. The invariants `manage.py check_ledger` verifies:

* ``balance`` == Σ ``balance_delta`` of the account's entries (only posting kinds have one);
* ``held`` == Σ ``held_delta`` of its entries == Σ amount of its open holds;
* each grant's ``remaining`` == Σ of the allocations that touch it (its grant entry adds the
  amount, holds draw, releases give back, expiry takes the rest);
* ``available`` (balance − held) == Σ of all the account's allocations: what grants still hold
  minus the unfunded (overage) part not yet settled;
* entries chain: each entry's ``balance_after``/``held_after`` is the previous one's plus its
  deltas, in ``sequence`` order.

Entries and allocations can't be updated or deleted: a database trigger refuses it.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from accounts.models import CREDIT_DECIMALS, USD_DECIMALS, APIKey, Organization


class CreditAccount(models.Model):
    organization = models.OneToOneField(
        Organization, on_delete=models.PROTECT, related_name="credit_account"
    )
    balance = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    held = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    overage_limit = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(0),
        help_text="How far `available` may go below zero (the plan's overage cap, 0 = hard stop).",
    )
    version = models.BigIntegerField(
        default=0, help_text="Bumped by every entry; the sequence of the last entry."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_non_negative"),
            models.CheckConstraint(
                condition=Q(overage_limit__gte=0), name="account_overage_limit_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"credits of {self.organization}"

    @property
    def available(self) -> Decimal:
        return self.balance - self.held


class GrantSource(models.TextChoices):
    PLAN = "plan", "Plan"
    PURCHASE = "purchase", "Purchase"
    PROMO = "promo", "Promo"
    ADJUSTMENT = "adjustment", "Adjustment"
    REFUND = "refund", "Refund"
    TRIAL = "trial", "Trial"
    REFERRAL = "referral", "Referral"


# Lower numbers burn first. Plan and promo credits expire, so they go before purchased ones.
DEFAULT_PRIORITY = {
    GrantSource.PROMO: 10,
    GrantSource.TRIAL: 10,
    GrantSource.REFERRAL: 10,
    GrantSource.PLAN: 20,
    GrantSource.REFUND: 30,
    GrantSource.ADJUSTMENT: 30,
    GrantSource.PURCHASE: 40,
}


class CreditGrant(models.Model):
    """A bucket of credits that entered the account. Burn-down order: lower `priority` first,
    then earliest `expires_at` (never-expiring last), then oldest."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="grants")
    source = models.CharField(max_length=16, choices=GrantSource.choices)
    amount = models.DecimalField(**CREDIT_DECIMALS)
    remaining = models.DecimalField(**CREDIT_DECIMALS)
    priority = models.IntegerField(default=30)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(
        null=True, blank=True, help_text="When its unspent rest was expired."
    )
    reference = models.CharField(
        max_length=255, blank=True, help_text="Plan period, Stripe object, promo code…"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", F("expires_at").asc(nulls_last=True), "created_at", "id"]
        indexes = [
            models.Index(
                fields=["account", "priority", "expires_at", "created_at"],
                name="grant_burn_down",
                condition=Q(remaining__gt=0),
            ),
            models.Index(
                fields=["expires_at"], name="grant_to_expire", condition=Q(remaining__gt=0)
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")),
                name="grant_remaining_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} grant of {self.amount}"


class HoldStatus(models.TextChoices):
    HELD = "held", "Held"
    CAPTURED = "captured", "Captured"
    RELEASED = "released", "Released"
    EXPIRED = "expired", "Expired"


class CreditHold(models.Model):
    """A pending debit (two-phase). Resolves at most once: captured, released or expired."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="holds")
    key = models.CharField(max_length=255, help_text="Unique per account, e.g. the job id.")
    amount = models.DecimalField(**CREDIT_DECIMALS)
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.HELD)
    captured_amount = models.DecimalField(**CREDIT_DECIMALS, null=True, blank=True)
    unfunded = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(0),
        help_text="The part no grant covered (overage).",
    )
    api_key = models.ForeignKey(
        APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "created_at"], name="hold_account_created"),
            models.Index(
                fields=["expires_at"], name="hold_open_expiry", condition=Q(status="held")
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["account", "key"], name="hold_key_unique"),
            # 0: the usage record of a job that costs nothing (fair-use unlimited plans).
            models.CheckConstraint(condition=Q(amount__gte=0), name="hold_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(captured_amount__isnull=True)
                | (Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount"))),
                name="hold_capture_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(status="held", resolved_at__isnull=True)
                | (~Q(status="held") & Q(resolved_at__isnull=False)),
                name="hold_resolved_iff_not_held",
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.key} ({self.amount}, {self.status})"


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture"
    RELEASE = "release", "Release"
    EXPIRY = "expiry", "Expiry"
    OVERAGE = "overage", "Overage settlement"
    ADJUSTMENT = "adjustment", "Adjustment"
    REFUND = "refund", "Refund"


POSTING_KINDS = frozenset(
    {
        EntryKind.GRANT,
        EntryKind.CAPTURE,
        EntryKind.EXPIRY,
        EntryKind.OVERAGE,
        EntryKind.ADJUSTMENT,
        EntryKind.REFUND,
    }
)


class LedgerEntry(models.Model):
    """One immutable movement. Posting kinds move `balance`; hold and release move `held`.
    `amount` is the magnitude; the deltas carry the sign."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries")
    sequence = models.BigIntegerField(help_text="Per-account order (the account's version).")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount = models.DecimalField(**CREDIT_DECIMALS)
    balance_delta = models.DecimalField(**CREDIT_DECIMALS)
    held_delta = models.DecimalField(**CREDIT_DECIMALS)
    balance_after = models.DecimalField(**CREDIT_DECIMALS)
    held_after = models.DecimalField(**CREDIT_DECIMALS)
    grant = models.ForeignKey(
        CreditGrant, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    hold = models.ForeignKey(
        CreditHold, null=True, blank=True, on_delete=models.PROTECT, related_name="entries"
    )
    idempotency_key = models.CharField(max_length=255)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"], name="entry_account_recent"),
            models.Index(fields=["account", "kind", "-created_at"], name="entry_account_kind"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"], name="entry_idempotency_key_unique"
            ),
            models.UniqueConstraint(fields=["account", "sequence"], name="entry_sequence_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="entry_amount_positive"),
            # hold/release move only `held`; capture moves both; the rest only `balance`.
            models.CheckConstraint(
                condition=Q(kind__in=["hold", "release"], balance_delta=0)
                | Q(kind="capture")
                | Q(kind__in=["grant", "expiry", "overage", "adjustment", "refund"], held_delta=0),
                name="entry_deltas_match_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.kind} {self.amount}"


class EntryAllocation(models.Model):
    """How an entry moved grants' `remaining` (grant NULL: the unfunded/overage part)."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations")
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="+")
    grant = models.ForeignKey(
        CreditGrant, null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    amount = models.DecimalField(**CREDIT_DECIMALS, help_text="Signed change of `remaining`.")

    class Meta:
        indexes = [models.Index(fields=["grant"], name="allocation_grant")]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="allocation_amount_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} on grant {self.grant_id or 'unfunded'}"


class OverageStatus(models.TextChoices):
    OPEN = "open", "Open (to invoice)"
    INVOICED = "invoiced", "Invoiced"
    PAID = "paid", "Paid"
    VOID = "void", "Void"


class OverageRecord(models.Model):
    """The overage of one organization's billing period, handed to billing when it closes."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="overages")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    credits = models.DecimalField(**CREDIT_DECIMALS)
    usd_per_credit = models.DecimalField(**USD_DECIMALS)
    amount_usd = models.DecimalField(**USD_DECIMALS)
    plan_slug = models.SlugField()
    status = models.CharField(
        max_length=16, choices=OverageStatus.choices, default=OverageStatus.OPEN
    )
    stripe_invoice_id = models.CharField(max_length=255, blank=True)
    settlement_entry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_end"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "period_start"], name="overage_one_per_period"
            ),
            models.CheckConstraint(condition=Q(credits__gt=0), name="overage_credits_positive"),
        ]

    def __str__(self) -> str:
        return f"overage {self.credits} of {self.account.organization} ({self.status})"


# The billing (Stripe) models live with the rest of billing, in `credits.billing.models` (same
# app label and tables); importing them here is what registers them with the credits app.
from credits.billing import models as billing_models  # noqa: E402, F401

# Budgets (per member, team or API key) live in `credits.budgets.models`; imported here so
# Django registers them with the credits app.
from credits.budgets import models as budget_models  # noqa: E402, F401

# Promo codes and their redemptions live in `credits.promos.models`.
from credits.promos import models as promo_models  # noqa: E402, F401

# Free trials and referrals live in `credits.trials.models`.
from credits.trials import models as trial_models  # noqa: E402, F401

# The spend-velocity pause lives in `credits.velocity.models`.
from credits.velocity import models as velocity_models  # noqa: E402, F401
