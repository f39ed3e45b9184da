"""The price override model (imported by `generations.models` so Django registers it)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class PriceOverride(models.Model):
    """One version of an organization's price for a model (or all models). Never edited."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="price_overrides"
    )
    model = models.ForeignKey(
        "generations.AIModel",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every model (a model's own override wins).",
    )
    credits = models.DecimalField(
        max_digits=18,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.001"))],
        help_text="Fixed price per generation in credits, whatever the params.",
    )
    discount_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal(100))],
        help_text="Discount off the list price (of these params), in percent.",
    )
    effective_from = models.DateTimeField()
    reason = models.CharField(max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "model", "-effective_from", "-id"]
        indexes = [
            models.Index(
                fields=["organization", "model", "-effective_from"], name="price_override_lookup"
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(credits__isnull=True) | Q(discount_percent__isnull=True),
                name="price_override_one_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization}: {self.model or 'all models'} — {self.terms}"

    @property
    def ends(self) -> bool:
        """A row with neither a price nor a discount ends the override (list price again)."""
        return self.credits is None and self.discount_percent is None

    @property
    def terms(self) -> str:
        if self.credits is not None:
            return f"{self.credits.normalize():f} credits"
        if self.discount_percent is not None:
            return f"{self.discount_percent.normalize():f}% off"
        return "list price"
