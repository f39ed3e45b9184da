"""Spend velocity (issue 15, "Safety rails on spend"): an organization whose paid spend in the
last hour is far above its trailing 7-day hourly average is paused until an owner or staff
confirms (docs/billing.md, "Velocity pause"). One row per organization that was ever paused or
confirmed; only `credits.velocity.services` writes it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import CREDIT_DECIMALS, Organization


class VelocityPause(models.Model):
    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="velocity_pause"
    )
    paused_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while paid generation is paused; empty: not paused."
    )
    last_hour_credits = models.DecimalField(**CREDIT_DECIMALS, null=True, blank=True)
    hourly_average = models.DecimalField(
        **CREDIT_DECIMALS, null=True, blank=True, help_text="Trailing 7-day hourly average."
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    exempt_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="After a confirmation the check steps aside until then.",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "velocity pause"

    def __str__(self) -> str:
        state = "paused" if self.paused_at else "not paused"
        return f"spend velocity of {self.organization} ({state})"
