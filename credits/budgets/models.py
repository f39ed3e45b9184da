"""Budgets: spending limits inside an organization, per member, team or API key (docs/budgets.md).

Only `credits.budgets._core` changes `used`/`reserved` (one conditional UPDATE each, like the
ledger's account row); `credits.budgets.services` creates, edits and deletes budgets.

* A budget counts in a *window*: the current UTC day, ISO week or month, or the epoch for a
  hard total. `window_start` says which window `used` belongs to; a budget is reset lazily, in
  SQL, by the first reservation or resolution that sees a newer window (no cron job).
* `reserved` is what open holds reserved; `used` is what captures charged in the window.
  Invariants (`credits.budgets.selectors.budgets_reconcile`): `reserved` == Σ amount of the
  budget's unresolved HoldBudget rows, and `used` (of the current window) == Σ captured of the
  rows resolved in that window.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import CREDIT_DECIMALS, APIKey, Organization, Team

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the window of a hard total


class BudgetScope(models.TextChoices):
    MEMBER = "member", "Member"
    TEAM = "team", "Team"
    KEY = "key", "API key"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Per day"
    WEEK = "week", "Per week"
    MONTH = "month", "Per month"
    TOTAL = "total", "In total"


class Budget(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=8, choices=BudgetScope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    api_key = models.ForeignKey(
        APIKey, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    period = models.CharField(max_length=8, choices=BudgetPeriod.choices)
    amount = models.DecimalField(
        **CREDIT_DECIMALS, help_text="The hard limit in credits per period (or in total)."
    )
    alert_percent = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Soft threshold: email owners/admins once a period when use reaches this %.",
    )
    used = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    reserved = models.DecimalField(**CREDIT_DECIMALS, default=Decimal(0))
    window_start = models.DateTimeField(default=EPOCH)
    alerted_window = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "scope", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="budget_amount_positive"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="budget_reserved_non_neg"),
            models.CheckConstraint(condition=Q(used__gte=0), name="budget_used_non_negative"),
            models.CheckConstraint(
                condition=(
                    Q(scope="member", user__isnull=False, team__isnull=True, api_key__isnull=True)
                    | Q(scope="team", user__isnull=True, team__isnull=False, api_key__isnull=True)
                    | Q(scope="key", user__isnull=True, team__isnull=True, api_key__isnull=False)
                ),
                name="budget_scope_target",
            ),
            models.UniqueConstraint(
                fields=["organization", "user"],
                condition=Q(scope="member"),
                name="budget_one_per_member",
            ),
            models.UniqueConstraint(
                fields=["team"], condition=Q(scope="team"), name="budget_one_per_team"
            ),
            models.UniqueConstraint(
                fields=["api_key"], condition=Q(scope="key"), name="budget_one_per_key"
            ),
        ]

    def __str__(self) -> str:
        return f"budget {self.limit_name} of {self.organization}"

    @property
    def target_id(self) -> str:
        """The id in the limit's name: the team's slug, the key's prefix, the member's user id
        (never an email)."""
        if self.scope == BudgetScope.TEAM:
            return self.team.slug
        if self.scope == BudgetScope.KEY:
            return self.api_key.prefix
        return str(self.user_id)

    @property
    def limit_name(self) -> str:
        return f"budget:{self.scope}:{self.target_id}"


class HoldBudget(models.Model):
    """What one hold reserved on one budget; resolved once with the hold (capture: `captured`
    moves to the budget's `used`; release: nothing is used)."""

    hold = models.ForeignKey(
        "credits.CreditHold", on_delete=models.CASCADE, related_name="budget_reservations"
    )
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="reservations")
    amount = models.DecimalField(**CREDIT_DECIMALS)
    captured = models.DecimalField(**CREDIT_DECIMALS, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hold", "budget"], name="hold_budget_unique"),
        ]
        indexes = [
            models.Index(
                fields=["budget"], condition=Q(resolved_at__isnull=True), name="hold_budget_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} of hold {self.hold_id} on budget {self.budget_id}"
