"""Webhook endpoints, the outbox of events and the log of their deliveries.

An event (`WebhookEvent`, stable id `evt_…`) is written in the transaction of what it reports,
with one `WebhookDelivery` per matching endpoint; each HTTP attempt of a delivery is one
`WebhookAttempt` row. Registered through `accounts.models` (imported at its end).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class EventType(models.TextChoices):
    GENERATION_SUCCEEDED = "generation.succeeded", "A generation succeeded"
    GENERATION_FAILED = "generation.failed", "A generation failed"
    BALANCE_LOW = "balance.low", "The balance fell below the alert threshold"
    CREDITS_GRANTED = "credits.granted", "Credits were granted"
    INVOICE_PAID = "invoice.paid", "An invoice was paid"
    OVERAGE_INVOICED = "overage.invoiced", "Overage was invoiced"
    BUDGET_THRESHOLD = "budget.threshold", "A budget reached its alert threshold"
    ALERT_OPENED = "alert.opened", "An operations alert opened (staff endpoints)"
    TEST = "webhook.test", "A test event"


# What an organization's endpoint may subscribe to; staff endpoints (no organization) get alerts.
ORGANIZATION_EVENT_TYPES = [
    EventType.GENERATION_SUCCEEDED,
    EventType.GENERATION_FAILED,
    EventType.BALANCE_LOW,
    EventType.CREDITS_GRANTED,
    EventType.INVOICE_PAID,
    EventType.OVERAGE_INVOICED,
    EventType.BUDGET_THRESHOLD,
]
STAFF_EVENT_TYPES = [EventType.ALERT_OPENED]


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookEndpoint(models.Model):
    """Where an organization's events go (or, with no organization, staff events)."""

    organization = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text="Empty: a staff endpoint (operations alerts).",
    )
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, help_text="The event types sent to it.")
    # The signing secret is needed in clear to sign; it is shown once, at creation or rotation.
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    failure_streak = models.PositiveIntegerField(
        default=0, help_text="Failed attempts in a row (reset by a success)."
    )
    failing_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "enabled"], name="webhook_endpoint_org")]

    def __str__(self) -> str:
        return self.url

    def signing_secrets(self, now) -> list[str]:
        """The current secret, and the previous one while it is still valid (after a rotation)."""
        found = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at
            and self.previous_secret_expires_at > now
        ):
            found.append(self.previous_secret)
        return found


class WebhookEvent(models.Model):
    """The outbox: one row per event, written in the transaction of what it reports."""

    public_id = models.CharField(max_length=40, unique=True, default=new_event_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_events",
    )
    type = models.CharField(max_length=40, choices=EventType.choices, db_index=True)
    payload = models.JSONField(default=dict)
    # The same fact reported twice (e.g. Stripe's invoice.paid and invoice.payment_succeeded)
    # is one event.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.public_id} {self.type}"

    def body(self) -> dict:
        """What is POSTed (the same bytes for every attempt of every delivery of the event)."""
        return {
            "id": self.public_id,
            "type": self.type,
            "created": int(self.created_at.timestamp()),
            "organization": self.organization.slug if self.organization_id else None,
            "data": self.payload,
        }


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Gave up"


class WebhookDelivery(models.Model):
    """One event to one endpoint, tried until it is delivered or the retry window ends."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    resend_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event.public_id} → {self.endpoint.url}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: the log shown on the page and in the admin."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
