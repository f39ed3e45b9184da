"""Free trials of a paid plan and referral credits (issue 15) — docs/billing.md, "Free trials"
and "Referrals". Both are grant sources (`trial`, `referral`).

`PlanTrial` is staff-made: which plan can be tried, for how many days, with how many credits.
`OrganizationTrial` is one row per organization ever (unique): the trial it started, when it
ends and when it was ended. `ReferralCode` is one per organization; `Referral` one per referred
organization (unique), with the two grants it paid.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import CREDIT_DECIMALS, Organization, Plan


class PlanTrial(models.Model):
    plan = models.OneToOneField(Plan, on_delete=models.PROTECT, related_name="trial")
    days = models.PositiveIntegerField(default=14)
    credits = models.DecimalField(
        **CREDIT_DECIMALS, help_text="Granted when the trial starts; they expire at its end."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["plan__monthly_price_usd", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="trial_credits_positive"),
            models.CheckConstraint(condition=Q(days__gte=1), name="trial_days_at_least_one"),
        ]

    def __str__(self) -> str:
        return f"{self.days}-day trial of {self.plan}"


class OrganizationTrial(models.Model):
    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="trial"
    )
    plan_trial = models.ForeignKey(PlanTrial, on_delete=models.PROTECT, related_name="trials")
    grant = models.OneToOneField(
        "credits.CreditGrant", on_delete=models.PROTECT, related_name="trial"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("started_at")), name="trial_ends_later"
            ),
        ]

    def __str__(self) -> str:
        return f"trial of {self.organization}"


class ReferralCode(models.Model):
    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="referral_code"
    )
    code = models.CharField(max_length=16, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.code


class Referral(models.Model):
    referrer = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="referrals_made"
    )
    referred = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="referral")
    referrer_grant = models.OneToOneField(
        "credits.CreditGrant", on_delete=models.PROTECT, related_name="+"
    )
    referred_grant = models.OneToOneField(
        "credits.CreditGrant", on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(referrer=F("referred")), name="referral_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.referrer} → {self.referred}"
