"""Users, organizations (the tenants), memberships, API keys, plans and subscriptions.

Writes go through `accounts.services`, reads through `accounts.selectors`.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

CREDIT_DECIMALS = {"max_digits": 18, "decimal_places": 3}
USD_DECIMALS = {"max_digits": 18, "decimal_places": 6}


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with an email address; may belong to several organizations."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(
        default=False, help_text="Can log into the admin site and see staff cost reports."
    )
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


class QueuePriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    HIGHEST = "highest", "Highest"
    DEDICATED = "dedicated", "Dedicated"


class FairUseThrottle(models.TextChoices):
    PRIORITY = "priority", "Lowest queue priority"
    RATE = "rate", "Per-hour rate"


# The plan every organization falls back to (a downgrade, a trial's end).
FREE_PLAN_SLUG = "free"


class Plan(models.Model):
    """A subscription plan. Plans differ only in credits and limits (spec §2, Plans).

    A null limit means "none / unlimited"; enterprise values are per contract.

    Plan shapes (docs/planning.md, "Plan shapes"): a credit plan (the spec's table); a fair-use
    `unlimited` plan (generations cost no credits and no price is shown; past `fair_use_cap`
    generations in a period jobs are throttled, never refused); pay-as-you-go (`payg`: no
    monthly price or grant, credits come from packs only). `watermark` is passed to the GPU
    backend with every job.
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=100)
    monthly_price_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Empty means per contract.",
    )
    monthly_credits = models.DecimalField(
        **CREDIT_DECIMALS, default=Decimal(0), validators=[MinValueValidator(Decimal(0))]
    )
    overage_enabled = models.BooleanField(
        default=False, help_text="Off: a hard stop at zero credits."
    )
    overage_cap = models.DecimalField(
        **CREDIT_DECIMALS,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        help_text="How far below zero the balance may go, in credits.",
    )
    overage_price_usd = models.DecimalField(
        **USD_DECIMALS,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="USD billed per overage credit when the period closes.",
    )
    daily_generation_cap = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty means no daily cap."
    )
    max_concurrent_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty means unlimited."
    )
    api_rate_limit_per_min = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute per API key. Empty: no API access."
    )
    queue_priority = models.CharField(
        max_length=16, choices=QueuePriority.choices, default=QueuePriority.NORMAL
    )
    api_access = models.BooleanField(default=True)
    unlimited = models.BooleanField(
        default=False,
        help_text="Fair-use unlimited: generations cost no credits and no credit price is "
        "shown; past the fair-use cap jobs are throttled, never refused.",
    )
    fair_use_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Unlimited plans: generations per plan period before jobs are throttled. "
        "Empty: never throttled.",
    )
    fair_use_throttle = models.CharField(
        max_length=16,
        choices=FairUseThrottle.choices,
        default=FairUseThrottle.PRIORITY,
        help_text="Past the fair-use cap: run at the lowest queue priority, or start at most "
        "the per-hour rate.",
    )
    fair_use_hourly_rate = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="With the per-hour throttle: jobs past the cap start at most this many per hour.",
    )
    watermark = models.BooleanField(
        default=False, help_text="Outputs are watermarked: passed to the GPU backend with each job."
    )
    # Entitlements (docs/pricing.md, "Entitlements"): checked in one place at acceptance,
    # `generations.entitlements.entitlements_check`. Empty means no limit.
    models_allowed = models.JSONField(
        null=True,
        blank=True,
        help_text='Model slugs this plan may run, e.g. ["sdxl-turbo"]. Empty: every model.',
    )
    max_megapixels = models.DecimalField(
        max_digits=8,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="Largest width × height per image, in megapixels. Empty: no limit.",
    )
    max_duration_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Longest video/audio duration, in seconds. Empty: no limit.",
    )
    max_batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most images per request. Empty: no limit."
    )
    is_public = models.BooleanField(
        default=True, help_text="Offered on the billing page (enterprise is by contract)."
    )
    sort_order = models.PositiveSmallIntegerField(default=0)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "slug"]
        constraints = [
            models.CheckConstraint(
                condition=Q(overage_enabled=True) | Q(overage_cap=0),
                name="plan_overage_cap_only_with_overage",
            ),
            models.CheckConstraint(
                condition=Q(fair_use_throttle="priority") | Q(fair_use_hourly_rate__gt=0),
                name="plan_rate_throttle_has_rate",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        allowed = self.models_allowed
        if allowed is not None and (
            not isinstance(allowed, list) or not all(isinstance(m, str) and m for m in allowed)
        ):
            raise ValidationError(
                {"models_allowed": 'A list of model slugs, e.g. ["sdxl-turbo"], or empty.'}
            )

    @property
    def shows_credit_prices(self) -> bool:
        """Whether the customer sees credit prices (not on a fair-use unlimited plan)."""
        return not self.unlimited


class Organization(models.Model):
    """A customer: the tenant that owns members, keys, subscription, credits and jobs."""

    slug = models.SlugField(
        max_length=50,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")],
        help_text="Lowercase letters, digits and hyphens.",
    )
    name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="organizations"
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class APIKey(models.Model):
    """An organization's API key. Only a SHA-256 digest of the secret is stored; the full key is
    shown once, at creation. `prefix` is the visible, indexed part used to find the row."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"


class Subscription(models.Model):
    """An organization's plan and its current billing period. One per organization."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    billing_anchor = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Periods start on this day of the month (clamped to shorter months), as "
        "Stripe's billing cycle anchor: Jan 31 → Feb 28 → Mar 31.",
    )
    cancel_at_period_end = models.BooleanField(default=False)
    stripe_customer_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=255, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} on {self.plan}"


class AuditEvent(models.Model):
    """Who did what, when: one row per state change that matters (Zulip-style)."""

    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or 'system'}"


class Team(models.Model):
    """A group of an organization's members (for budgets: docs/budgets.md). Writes go through
    `accounts.teams`."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    slug = models.SlugField(
        max_length=50,
        validators=[RegexValidator(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")],
        help_text="Lowercase letters, digits and hyphens; unique in the organization.",
    )
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams", blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="team_slug_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.organization}/{self.slug}"


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="team_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


# Outbound webhooks (accounts/webhooks/models.py) and enterprise contracts
# (accounts/contracts/models.py) live in their own modules; imported here so Django registers
# them with this app.
from accounts.contracts.models import Contract  # noqa: E402, F401
from accounts.webhooks.models import (  # noqa: E402, F401
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
