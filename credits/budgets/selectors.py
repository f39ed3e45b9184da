"""Reads of budgets: lists, each budget's use in its current window, the budgets that apply to
a caller (GET /api/v1/quotas/), and the reconciliation of budgets with their holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Organization
from credits.budgets.models import EPOCH, Budget, BudgetPeriod, BudgetScope, HoldBudget

ZERO = Decimal("0.000")  # as the database stores credits


def window_start(*, period: str, now: datetime) -> datetime:
    """The start of the budget window containing `now` (UTC; what `_core.WINDOW_SQL` computes)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return day
    if period == BudgetPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    if period == BudgetPeriod.MONTH:
        return day.replace(day=1)
    return EPOCH


def window_end(*, period: str, now: datetime) -> datetime | None:
    """When the window containing `now` ends and the budget resets (None: a hard total)."""
    start = window_start(period=period, now=now)
    if period == BudgetPeriod.DAY:
        return start + timedelta(days=1)
    if period == BudgetPeriod.WEEK:
        return start + timedelta(days=7)
    if period == BudgetPeriod.MONTH:
        return (start + timedelta(days=32)).replace(day=1)
    return None


@dataclass(frozen=True)
class BudgetUse:
    budget: Budget
    used: Decimal  # captured in the current window
    reserved: Decimal  # held by open jobs
    resets_at: datetime | None

    @property
    def remaining(self) -> Decimal:
        return max(self.budget.amount - self.used - self.reserved, ZERO)

    @property
    def percent(self) -> int:
        if self.budget.amount <= 0:
            return 100
        return min(100, int((self.used + self.reserved) * 100 / self.budget.amount))

    @property
    def alerting(self) -> bool:
        pct = self.budget.alert_percent
        return pct is not None and self.used + self.reserved >= self.budget.amount * pct / 100

    def as_dict(self) -> dict:
        """The budget as the API shows it (credits as strings, SPEC's limit name)."""
        b = self.budget
        return {
            "id": b.pk,
            "limit": b.limit_name,
            "scope": b.scope,
            "target": b.target_id,
            "period": b.period,
            "limit_value": str(b.amount),
            "alert_percent": b.alert_percent,
            "used": str(self.used),
            "reserved": str(self.reserved),
            "remaining": str(self.remaining),
            "resets_at": (
                self.resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
                if self.resets_at
                else None
            ),
        }


def budget_use(*, budget: Budget, now: datetime | None = None) -> BudgetUse:
    now = now or timezone.now()
    current = window_start(period=budget.period, now=now)
    used = budget.used if budget.window_start == current else ZERO
    return BudgetUse(
        budget=budget,
        used=used,
        reserved=budget.reserved,
        resets_at=window_end(period=budget.period, now=now),
    )


def budget_list(*, organization: Organization) -> QuerySet[Budget]:
    return Budget.objects.filter(organization=organization).select_related(
        "user", "team", "api_key"
    )


def budget_get(*, organization: Organization, budget_id) -> Budget:
    from config.errors import NotFound

    try:
        return budget_list(organization=organization).get(pk=int(budget_id))
    except (Budget.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such budget.") from None


def budgets_applicable(
    *, organization: Organization, user_id: int | None, api_key_id: int | None
) -> QuerySet[Budget]:
    """The budgets a submission by this caller reserves on (the same rule as `_core.reserve`)."""
    match = Q(scope=BudgetScope.KEY, api_key_id=api_key_id) if api_key_id else Q(pk__in=[])
    if user_id:
        match |= Q(scope=BudgetScope.MEMBER, user_id=user_id)
        match |= Q(scope=BudgetScope.TEAM, team__memberships__user_id=user_id)
    return budget_list(organization=organization).filter(match).distinct()


def budgets_uses(*, budgets, now: datetime | None = None) -> list[BudgetUse]:
    now = now or timezone.now()
    return [budget_use(budget=b, now=now) for b in budgets]


@dataclass(frozen=True)
class BudgetMismatch:
    budget_id: int
    field: str
    stored: Decimal
    expected: Decimal


def budgets_reconcile(
    *,
    organization: Organization | None = None,
    organization_ids=None,
    now: datetime | None = None,
) -> list[BudgetMismatch]:
    """Check every budget against its holds' records: `reserved` == Σ amount of its open
    reservations, and its use in the current window == Σ captured by reservations resolved in
    that window. Returns the mismatches (empty: they reconcile)."""
    now = now or timezone.now()
    budgets = Budget.objects.all()
    if organization is not None:
        budgets = budgets.filter(organization=organization)
    if organization_ids is not None:
        budgets = budgets.filter(organization_id__in=list(organization_ids))
    out: list[BudgetMismatch] = []
    for budget in budgets.order_by("pk"):
        rows = HoldBudget.objects.filter(budget=budget)
        open_sum = rows.filter(resolved_at__isnull=True).aggregate(s=Sum("amount"))["s"] or ZERO
        start = window_start(period=budget.period, now=now)
        end = window_end(period=budget.period, now=now)
        resolved = rows.filter(resolved_at__gte=start)
        if end is not None:
            resolved = resolved.filter(resolved_at__lt=end)
        used_sum = resolved.aggregate(s=Sum("captured"))["s"] or ZERO
        use = budget_use(budget=budget, now=now)
        if budget.reserved != open_sum:
            out.append(BudgetMismatch(budget.pk, "reserved", budget.reserved, open_sum))
        if use.used != used_sum:
            out.append(BudgetMismatch(budget.pk, "used", use.used, used_sum))
    return out
