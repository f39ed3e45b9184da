"""Budgets: the acceptance step of `credits.services.spend_authorize` (reserve on every
applicable budget, refuse naming the budget, record the reservations with the hold) and the
owners'/admins' create, edit and delete (each audited). Use moves only through `_core`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import APIKey, Membership, Organization, Role, Team, User
from accounts.services import audit_record
from accounts.teams import manager_require
from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from config.errors import QuotaExceeded, ValidationError, limit_details
from config.web.formats import format_credits
from credits.billing import emails
from credits.budgets import _core
from credits.budgets.models import Budget, BudgetPeriod, BudgetScope
from credits.budgets.selectors import budget_use

BUDGET_THRESHOLD_EMAIL = "budget_threshold"
MAX_AMOUNT = Decimal("1000000000")

PERIOD_WORDS = {
    BudgetPeriod.DAY: "a day",
    BudgetPeriod.WEEK: "a week",
    BudgetPeriod.MONTH: "a month",
    BudgetPeriod.TOTAL: "in total",
}


def budget_label(budget: Budget) -> str:
    """The budget as a person reads it: “the API key “ci” (gpc_ab12) budget”."""
    if budget.scope == BudgetScope.TEAM:
        return f"The team “{budget.team.name}” budget"
    if budget.scope == BudgetScope.KEY:
        return f"The API key “{budget.api_key.name}” ({budget.api_key.prefix}…) budget"
    return f"The member budget of {budget.user.email}"


# --- Acceptance (joins the job's transaction; the caller holds the account's row lock) --------


def budgets_reserve(
    *,
    organization: Organization,
    api_key_id: int | None,
    user_id: int | None,
    amount: Decimal,
    now: datetime,
) -> list[int]:
    """Reserve `amount` on every budget that applies (one statement). QuotaExceeded naming the
    first budget that can't take it (key, member, then teams); the caller's transaction rolls
    back whatever was reserved. Returns the reserved budgets' ids."""
    reserved, refused, alerted = _core.reserve(
        organization_id=organization.pk,
        api_key_id=api_key_id,
        user_id=user_id,
        amount=amount,
        now=now,
    )
    if refused:
        raise _refusal(refused, amount=amount, now=now)
    if alerted:
        _alert(organization=organization, budget_ids=alerted, now=now)
    return reserved


def budgets_record(*, hold, budget_ids: list[int], amount: Decimal, now: datetime) -> None:
    """The new hold's reservations, resolved with it (`credits.ledger.holds`)."""
    _core.record(hold_id=hold.pk, budget_ids=budget_ids, amount=amount, now=now)


_SCOPE_ORDER = {BudgetScope.KEY: 0, BudgetScope.MEMBER: 1, BudgetScope.TEAM: 2}


def _refusal(budget_ids: list[int], *, amount: Decimal, now: datetime) -> QuotaExceeded:
    budgets = list(
        Budget.objects.filter(pk__in=budget_ids).select_related("user", "team", "api_key")
    )
    budget = min(budgets, key=lambda b: (_SCOPE_ORDER[b.scope], b.pk))
    use = budget_use(budget=budget, now=now)
    period = PERIOD_WORDS[budget.period]
    detail = (
        f"{budget_label(budget)} of {format_credits(budget.amount)} credits {period} is used up: "
        f"{format_credits(use.used + use.reserved)} used or held by running jobs, and this "
        f"generation needs {format_credits(amount)}."
    )
    if use.resets_at is not None:
        detail += f" It resets at {use.resets_at:%Y-%m-%d %H:%M} UTC."
    return QuotaExceeded(
        detail,
        reason="budget",
        **limit_details(
            name=budget.limit_name,
            value=budget.amount,
            used=use.used,
            reserved=use.reserved,
            resets_at=use.resets_at,
        ),
    )


def _manager_emails(organization: Organization) -> list[str]:
    return list(
        Membership.objects.filter(
            organization=organization, role__in=[Role.OWNER, Role.ADMIN], user__is_active=True
        )
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def _alert(*, organization: Organization, budget_ids: list[int], now: datetime) -> None:
    """A budget crossed its soft threshold (once per window: `_core.reserve` moved its
    `alerted_window`): email the owners and admins and send `budget.threshold`."""
    for budget in Budget.objects.filter(pk__in=budget_ids).select_related(
        "user", "team", "api_key"
    ):
        use = budget_use(budget=budget, now=now)
        payload = {
            "budget": budget.pk,
            "limit": budget.limit_name,
            "limit_value": str(budget.amount),
            "alert_percent": budget.alert_percent,
            "used": str(use.used),
            "reserved": str(use.reserved),
            "period": budget.period,
            "resets_at": use.resets_at.isoformat() if use.resets_at else None,
        }
        key = f"budget.threshold:{budget.pk}:{budget.alerted_window.isoformat()}"
        webhook_event_emit(
            organization=organization,
            type=EventType.BUDGET_THRESHOLD,
            payload=payload,
            dedupe_key=key,
            now=now,
        )
        emails.queue(
            organization=organization,
            kind=BUDGET_THRESHOLD_EMAIL,
            dedupe_key=key,
            recipients=_manager_emails(organization),
            context={
                "label": budget_label(budget),
                "amount": budget.amount,
                "period": PERIOD_WORDS[budget.period],
                "percent": budget.alert_percent,
                "used": use.used + use.reserved,
                "resets_at": use.resets_at,
            },
        )


# --- Owners and admins: create, edit, delete (audited) -----------------------------------------


def _clean_amount(value) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise ValidationError(
            "The budget must be a positive number of credits.",
            errors={"amount": ["A positive number of credits."]},
        )
    if amount != amount.quantize(Decimal("0.001")):
        raise ValidationError(
            "Credits have at most 3 decimal places.", errors={"amount": ["At most 3 decimals."]}
        )
    return amount


def _clean_alert(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        percent = int(value)
    except (ValueError, TypeError):
        percent = 0
    if not 1 <= percent <= 100:
        raise ValidationError(
            "The alert threshold is a percentage from 1 to 100.",
            errors={"alert_percent": ["1 to 100."]},
        )
    return percent


def _clean_period(value) -> str:
    if value not in BudgetPeriod.values:
        raise ValidationError(
            "The period is day, week, month or total.",
            errors={"period": ["day, week, month or total."]},
        )
    return value


def _target(
    *,
    organization: Organization,
    scope: str,
    user: User | None,
    team: Team | None,
    api_key: APIKey | None,
) -> dict:
    if scope == BudgetScope.MEMBER:
        if (
            user is None
            or not Membership.objects.filter(organization=organization, user=user).exists()
        ):
            raise ValidationError(
                "Pick a member of the organization.", errors={"user": ["Not a member."]}
            )
        return {"user": user}
    if scope == BudgetScope.TEAM:
        if team is None or team.organization_id != organization.pk:
            raise ValidationError(
                "Pick one of the organization's teams.", errors={"team": ["No such team."]}
            )
        return {"team": team}
    if scope == BudgetScope.KEY:
        if api_key is None or api_key.organization_id != organization.pk:
            raise ValidationError(
                "Pick one of the organization's API keys.", errors={"api_key": ["No such key."]}
            )
        return {"api_key": api_key}
    raise ValidationError(
        "The scope is member, team or key.", errors={"scope": ["member, team or key."]}
    )


@transaction.atomic(durable=True)
def budget_create(
    *,
    organization: Organization,
    actor: User,
    scope: str,
    period: str,
    amount,
    alert_percent=None,
    user: User | None = None,
    team: Team | None = None,
    api_key: APIKey | None = None,
) -> Budget:
    manager_require(organization=organization, actor=actor)
    target = _target(organization=organization, scope=scope, user=user, team=team, api_key=api_key)
    now = timezone.now()
    fields = {
        "period": _clean_period(period),
        "amount": _clean_amount(amount),
        "alert_percent": _clean_alert(alert_percent),
    }
    from credits.budgets.selectors import window_start

    try:
        with transaction.atomic():
            budget = Budget.objects.create(
                organization=organization,
                scope=scope,
                created_by=actor,
                window_start=window_start(period=fields["period"], now=now),
                created_at=now,
                updated_at=now,
                **target,
                **fields,
            )
    except IntegrityError:
        raise ValidationError(
            "That member, team or key has a budget already; edit it instead.",
            errors={scope if scope != "key" else "api_key": ["Has a budget already."]},
        ) from None
    audit_record(
        action="budget.created",
        organization=organization,
        actor=actor,
        target=budget,
        data={"limit": budget.limit_name, **{k: str(v) for k, v in fields.items()}},
    )
    return budget


@transaction.atomic  # not durable: the admin's change view runs it in its own transaction
def budget_update(
    *,
    budget: Budget,
    actor: User,
    amount=None,
    period=None,
    alert_percent="keep",
    as_staff: bool = False,
) -> Budget:
    """Change a budget's limit, period or alert threshold. Its use so far is kept (a new period
    starts counting at the next reservation); a lower limit refuses new jobs, never running ones.
    Owners and admins, or staff in the admin (`as_staff`)."""
    if not as_staff:
        manager_require(organization=budget.organization, actor=actor)
    current = Budget.objects.select_for_update().get(pk=budget.pk)
    before = {
        "amount": str(current.amount),
        "period": current.period,
        "alert_percent": current.alert_percent,
    }
    if amount is not None:
        current.amount = _clean_amount(amount)
    if period is not None:
        current.period = _clean_period(period)
    if alert_percent != "keep" and _clean_alert(alert_percent) != current.alert_percent:
        current.alert_percent = _clean_alert(alert_percent)
        current.alerted_window = None  # a new threshold may alert again this period
    current.updated_at = timezone.now()
    current.save(
        update_fields=["amount", "period", "alert_percent", "alerted_window", "updated_at"]
    )
    after = {
        "amount": str(current.amount),
        "period": current.period,
        "alert_percent": current.alert_percent,
    }
    audit_record(
        action="budget.updated",
        organization=current.organization,
        actor=actor,
        target=current,
        data={"limit": budget.limit_name, "from": before, "to": after},
    )
    return Budget.objects.select_related("user", "team", "api_key").get(pk=current.pk)


@transaction.atomic  # not durable: the admin's delete view runs it in its own transaction
def budget_delete(*, budget: Budget, actor: User, as_staff: bool = False) -> None:
    """Delete a budget; the open jobs' reservations on it go with it (they no longer count).
    Owners and admins, or staff in the admin (`as_staff`)."""
    if not as_staff:
        manager_require(organization=budget.organization, actor=actor)
    audit_record(
        action="budget.deleted",
        organization=budget.organization,
        actor=actor,
        target=budget,
        data={"limit": budget.limit_name, "amount": str(budget.amount), "period": budget.period},
    )
    budget.delete()
