"""Promo codes: staff-made codes an organization redeems once for a grant of credits (source
`promo`) — docs/billing.md, "Promo codes".

`PromoCode.redemptions_count` is changed only by `credits.promos.services.promo_redeem`, with
one conditional UPDATE (never past `max_redemptions`); each redemption is a `PromoRedemption`
row, unique per (code, organization, seq) where `seq` counts the organization's redemptions of
the code (1 … `max_per_organization`). Invariant: `redemptions_count` == the code's rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import CREDIT_DECIMALS, Organization


def normalize_code(value: str) -> str:
    """Codes compare case-insensitively and without surrounding spaces: stored upper-case."""
    return (value or "").strip().upper()


class PromoCode(models.Model):
    code = models.CharField(
        max_length=40, unique=True, help_text="Stored upper-case; redeemed in any case."
    )
    description = models.CharField(max_length=200, blank=True)
    credits = models.DecimalField(**CREDIT_DECIMALS, help_text="Credits granted per redemption.")
    grant_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The granted credits expire this many days after redemption (empty: never, "
        "unless a date is set).",
    )
    grant_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The granted credits expire at this moment (the earlier of the two wins).",
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Redemptions in total (empty: unlimited)."
    )
    max_per_organization = models.PositiveIntegerField(default=1)
    redemptions_count = models.PositiveIntegerField(default=0, editable=False)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="promo_credits_positive"),
            models.CheckConstraint(
                condition=Q(max_per_organization__gte=1), name="promo_per_org_at_least_one"
            ),
            models.CheckConstraint(
                condition=Q(max_redemptions__isnull=True)
                | Q(redemptions_count__lte=F("max_redemptions")),
                name="promo_within_max_redemptions",
            ),
            models.CheckConstraint(
                condition=Q(code=models.functions.Upper("code")), name="promo_code_upper_case"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def save(self, *args, **kwargs):
        self.code = normalize_code(self.code)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # Before the unique check (`full_clean`), so "launch" collides with "LAUNCH".
        self.code = normalize_code(self.code)


class PromoRedemption(models.Model):
    promo_code = models.ForeignKey(PromoCode, on_delete=models.PROTECT, related_name="redemptions")
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="promo_redemptions"
    )
    seq = models.PositiveIntegerField(
        default=1, help_text="The organization's n-th redemption of this code."
    )
    grant = models.OneToOneField(
        "credits.CreditGrant", on_delete=models.PROTECT, related_name="promo_redemption"
    )
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    redeemed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-redeemed_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["promo_code", "organization", "seq"], name="promo_redemption_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.promo_code} by {self.organization}"
