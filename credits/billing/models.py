"""Billing (Stripe) records: credit packs, the Stripe customer of an organization, every webhook
delivery, purchases, auto top-up, low-balance alerts and billing emails.

App label credits (same tables and migrations as before they moved here); loaded with the
credits models by the import at the end of credits/models.py. Written only by
credits.billing (payments move credits through the credits services like any other grant).
See docs/billing.md.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import CREDIT_DECIMALS, Organization


class CreditPack(models.Model):
    """A one-off purchase of credits that never expire (admin-defined; defaults from a data
    migration). Its Stripe price is created by `manage.py stripe_sync`."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    credits = models.DecimalField(**CREDIT_DECIMALS)
    price_usd = models.DecimalField(max_digits=12, decimal_places=2)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    active = models.BooleanField(default=True, help_text="Offered on the billing page.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "credits", "slug"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="pack_credits_positive"),
            models.CheckConstraint(condition=Q(price_usd__gt=0), name="pack_price_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class StripeCustomer(models.Model):
    """The Stripe customer of an organization (one each), with what billing tracks about it."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="stripe_customer"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    email = models.EmailField(blank=True)
    default_payment_method_id = models.CharField(
        max_length=255, blank=True, help_text="The saved card used for off-session payments."
    )
    past_due_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="First failed subscription payment not yet recovered; the plan falls back to "
        "free after the grace period.",
    )
    subscription_synced_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Creation time of the newest Stripe subscription event applied (older ones "
        "arriving late are not applied over it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization"]

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} ({self.organization})"


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received", "Received (not processed yet)"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed (will be retried)"
    IGNORED = "ignored", "Ignored"
    INVALID = "invalid", "Invalid (bad signature or payload)"


class StripeEvent(models.Model):
    """Every verified webhook event, stored before it is processed (dj-stripe style), once per
    Stripe event id and processed once. Refused deliveries (bad signature, malformed payload)
    are not stored here but counted in `StripeWebhookRefusal`; rows with status `invalid` and
    `raw_body` are older refusals, pruned with the refusal trace."""

    event_id = models.CharField(max_length=255, blank=True)
    type = models.CharField(max_length=100, blank=True, db_index=True)
    livemode = models.BooleanField(default=False)
    api_version = models.CharField(max_length=64, blank=True)
    stripe_created_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(null=True, blank=True, help_text="The event as Stripe sent it.")
    raw_body = models.TextField(
        blank=True,
        help_text="The raw body of a refused delivery (earlier versions only; pruned).",
    )
    signature_valid = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    error = models.TextField(blank=True)
    note = models.CharField(max_length=500, blank=True, help_text="What processing did.")
    attempts = models.PositiveIntegerField(default=0)
    deliveries = models.PositiveIntegerField(default=1)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="stripe_event_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id"], condition=~Q(event_id=""), name="stripe_event_id_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id or 'invalid delivery'} {self.type} ({self.status})"


class StripeWebhookRefusal(models.Model):
    """The bounded trace of refused webhook deliveries (bad or missing signature, malformed
    payload): one row per hour with a counter and the first few samples, each truncated. An
    unauthenticated caller can't make it grow beyond that; rows are pruned after a while."""

    hour = models.DateTimeField(unique=True, help_text="The hour (UTC) the refusals fell in.")
    count = models.PositiveIntegerField(default=0, help_text="Deliveries refused that hour.")
    samples = models.JSONField(
        default=list,
        blank=True,
        help_text="The first refusals of the hour: when, why, and the body's first bytes.",
    )
    last_at = models.DateTimeField(help_text="The last refusal of the hour.")

    class Meta:
        ordering = ["-hour"]
        verbose_name = "refused webhook delivery (per hour)"
        verbose_name_plural = "refused webhook deliveries (per hour)"

    def __str__(self) -> str:
        return f"{self.count} refused webhook deliveries at {self.hour:%Y-%m-%d %H}:00 UTC"


class PurchaseKind(models.TextChoices):
    CREDIT_PACK = "credit_pack", "Credit pack (Checkout)"
    AUTO_TOP_UP = "auto_top_up", "Auto top-up"


class PurchaseStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


class Purchase(models.Model):
    """A credit pack bought through Checkout or charged off-session by auto top-up. Its credits
    enter the account once, as one purchase grant; a refund claws back what is unspent."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="purchases"
    )
    kind = models.CharField(max_length=16, choices=PurchaseKind.choices)
    pack = models.ForeignKey(
        CreditPack, null=True, blank=True, on_delete=models.PROTECT, related_name="purchases"
    )
    credits = models.DecimalField(**CREDIT_DECIMALS)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(
        max_length=24, choices=PurchaseStatus.choices, default=PurchaseStatus.PENDING
    )
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    grant = models.OneToOneField(
        "credits.CreditGrant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="purchase",
    )
    refunded_cents = models.PositiveIntegerField(default=0)
    credits_clawed_back = models.DecimalField(
        **CREDIT_DECIMALS, default=Decimal(0), help_text="Unspent credits taken back on refund."
    )
    credits_unfunded = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(0),
        help_text="Refunded credits already spent: posted as unfunded (negative balance).",
    )
    flagged = models.BooleanField(default=False, db_index=True)
    flag_reason = models.CharField(max_length=500, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_checkout_session_id"],
                condition=~Q(stripe_checkout_session_id=""),
                name="purchase_checkout_session_unique",
            ),
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"],
                condition=~Q(stripe_payment_intent_id=""),
                name="purchase_payment_intent_unique",
            ),
            models.CheckConstraint(condition=Q(credits__gt=0), name="purchase_credits_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.credits} for {self.organization}"

    @property
    def credits_refunded(self) -> Decimal:
        return self.credits_clawed_back + self.credits_unfunded


class AutoTopUp(models.Model):
    """Opt-in: when available credits fall below `threshold_credits`, buy `pack` off-session
    with the saved card — at most once per crossing (`armed` is cleared when it fires and set
    again once the balance is back at or above the threshold)."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="auto_top_up"
    )
    enabled = models.BooleanField(default=False)
    threshold_credits = models.DecimalField(**CREDIT_DECIMALS)
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="+")
    armed = models.BooleanField(default=True)
    last_purchase = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_triggered_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.CharField(
        max_length=500, blank=True, help_text="Why it was disabled (a declined charge…)."
    )
    # Safety rails (issue 15): per calendar month (UTC), counting pending and paid top-ups.
    monthly_cap_credits = models.DecimalField(
        **CREDIT_DECIMALS,
        null=True,
        blank=True,
        help_text="At most this many credits bought automatically per month (empty: no cap).",
    )
    max_per_month = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=10,
        help_text="At most this many automatic purchases per month (empty: no limit).",
    )
    capped_month = models.DateField(
        null=True,
        blank=True,
        help_text="The month (its first day) in which a cap stopped a top-up; shown on the "
        "billing page, emailed once.",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto top-up"
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold_credits__gte=0), name="auto_top_up_threshold_non_negative"
            ),
        ]

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"auto top-up of {self.organization} ({state})"


class LowBalanceAlert(models.Model):
    """Email the owners once when available credits fall below `threshold_credits`; re-armed
    when the balance is back at or above it."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="low_balance_alert"
    )
    enabled = models.BooleanField(default=True)
    threshold_credits = models.DecimalField(**CREDIT_DECIMALS)
    armed = models.BooleanField(default=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(threshold_credits__gte=0), name="low_balance_threshold_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"low-balance alert of {self.organization} below {self.threshold_credits}"


class BillingEmail(models.Model):
    """Each billing email, sent once per `dedupe_key` (receipt of a purchase, failure of an
    invoice…) however often the event behind it is delivered."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="billing_emails"
    )
    kind = models.CharField(max_length=32)
    dedupe_key = models.CharField(max_length=255, unique=True)
    recipients = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    context = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} email to {self.organization}"
