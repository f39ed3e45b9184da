"""Meters, their versioned prices, and the usage events charged through them."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import CREDIT_DECIMALS, APIKey, Organization
from credits.models import CreditHold

# Quantities and per-unit prices may be finer than a credit (0.000002 credits per token).
QUANTITY_DECIMALS = {"max_digits": 24, "decimal_places": 6}


class Meter(models.Model):
    """Something metered outside generation jobs, with its unit (`GB-day`, `1K tokens`)."""

    slug = models.SlugField(
        max_length=100, unique=True, help_text="What events give as `type`, e.g. `llm-tokens`."
    )
    name = models.CharField(max_length=150)
    unit = models.CharField(max_length=40, help_text="What one `quantity` counts: `GB-day`…")
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True, help_text="Inactive: new events are refused.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})"


class MeterRate(models.Model):
    """A meter's price per unit from `effective_from` on. Never edited: a change is a new
    version with who, when and why (`services.meter_rate_set`)."""

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="rates")
    credits_per_unit = models.DecimalField(**QUANTITY_DECIMALS)
    effective_from = models.DateTimeField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["meter", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "effective_from"], name="meter_rate_version_unique"
            ),
            models.CheckConstraint(condition=Q(credits_per_unit__gt=0), name="meter_rate_positive"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.meter.slug}: {self.credits_per_unit.normalize():f} credits per "
            f"{self.meter.unit} from {self.effective_from:%Y-%m-%d}"
        )


class UsageEvent(models.Model):
    """One metered event of an organization, charged once: its `event_id` (the client's
    idempotency key) is unique per organization; its hold (captured at once) is the ledger's
    record. `credits` = quantity × the meter's price at the event's time, rounded once to 3
    places, half up (0: too small to charge, no hold)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="usage_events"
    )
    event_id = models.CharField(max_length=200)
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="events")
    rate = models.ForeignKey(MeterRate, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    time = models.DateTimeField(help_text="When the usage happened (the event's `time`).")
    quantity = models.DecimalField(**QUANTITY_DECIMALS)
    data = models.JSONField(default=dict, blank=True)
    credits = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    hold = models.OneToOneField(
        CreditHold, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_event"
    )
    fingerprint = models.CharField(max_length=64)
    api_key = models.ForeignKey(
        APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-time"], name="usage_event_org_time")]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "event_id"], name="usage_event_id_unique"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="usage_quantity_positive"),
            models.CheckConstraint(condition=Q(credits__gte=0), name="usage_credits_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} event {self.event_id}"
