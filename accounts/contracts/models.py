"""The contract model (imported by `accounts.models` so Django registers it)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

CREDIT_DECIMALS = {"max_digits": 18, "decimal_places": 3}
USD_DECIMALS = {"max_digits": 18, "decimal_places": 6}


class Contract(models.Model):
    """One version of an organization's enterprise contract. Never edited: a change is a new
    version (who, when, why); the organization's latest version is its terms."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="contracts"
    )
    version = models.PositiveIntegerField()
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty: open-ended.")
    credits_per_period = models.DecimalField(
        **CREDIT_DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Granted at each period open instead of the plan's credits. Empty: the plan's.",
    )
    overage_price_usd = models.DecimalField(
        **USD_DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="USD per overage credit. Empty: the plan's price.",
    )
    overage_cap = models.DecimalField(
        **CREDIT_DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="How far below zero the balance may go. 0: a hard stop. Empty: the plan's.",
    )
    notes = models.TextField(blank=True)
    reason = models.CharField(max_length=255, help_text="Why this version.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "version"], name="contract_version_unique"
            ),
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="contract_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} contract v{self.version}"

    def in_force(self, at) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)
