"""Free trials without a card (issue 15): an owner of an organization on the free plan starts
a `PlanTrial`; the subscription moves to the trial's plan with status `trialing` for the
trial's days, and the trial's credits are granted (source `trial`) expiring at the trial's end
— INSTEAD of the plan's period grant (no `subscription_period_opened`, so trial and plan
credits never stack) and with the free plan's overage allowance kept (no card, no overage).
One trial per organization ever (a unique row). `trials_end_due` (beat) returns ended trials to
the free plan through `downgrade_to_free`; `subscriptions_renew_due` skips trialing ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, Role, Subscription, SubscriptionStatus
from accounts.services import FREE_PLAN_SLUG, audit_record
from config.errors import PermissionDenied, ValidationError
from credits.billing.subscriptions import _update, close_current_period_overage, downgrade_to_free
from credits.models import GrantSource
from credits.services import organization_grant_in_transaction
from credits.trials.models import OrganizationTrial, PlanTrial

OWNERS_ONLY = "Only owners can start a trial."
ALREADY = "Your organization has already had a free trial."
FREE_ONLY = "Trials are for organizations on the free plan."
NOT_AVAILABLE = "This trial is not available."
NOT_TRIALING = "Your organization is not on a free trial."
OWNERS_ONLY_END = "Only owners can end the trial."


def _lock(organization: Organization) -> Subscription:
    """The subscription row, locked. Locked alone, then read with its plan: a locking read
    that joins the plan finds no row once a concurrent start has changed the plan."""
    list(Subscription.objects.select_for_update().filter(organization=organization).values("pk"))
    return Subscription.objects.select_related("plan", "organization").get(
        organization=organization
    )


@transaction.atomic(durable=True)
def _start(*, organization: Organization, plan_trial: PlanTrial, actor, now: datetime):
    sub = _lock(organization)
    if OrganizationTrial.objects.filter(organization=organization).exists():
        raise ValidationError(ALREADY)
    if sub.plan.slug != FREE_PLAN_SLUG or sub.status != SubscriptionStatus.ACTIVE:
        raise ValidationError(FREE_ONLY)
    ends_at = now + timedelta(days=plan_trial.days)
    close_current_period_overage(sub, until=now)
    _update(
        sub,
        plan=plan_trial.plan,
        status=SubscriptionStatus.TRIALING,
        current_period_start=now,
        current_period_end=ends_at,
        billing_anchor=now,
        cancel_at_period_end=False,
    )
    grant = organization_grant_in_transaction(
        organization=organization,
        amount=plan_trial.credits,
        source=GrantSource.TRIAL,
        reason=f"{plan_trial.plan.name} trial credits",
        idempotency_key=f"trial:{organization.pk}",
        actor=actor,
        expires_at=ends_at,
    )
    trial = OrganizationTrial.objects.create(
        organization=organization,
        plan_trial=plan_trial,
        grant=grant,
        started_at=now,
        ends_at=ends_at,
    )
    audit_record(
        action="trial.started",
        organization=organization,
        actor=actor,
        target=trial,
        data={
            "plan": plan_trial.plan.slug,
            "days": plan_trial.days,
            "ends_at": ends_at.isoformat(),
        },
    )
    return trial


def trial_start(
    *, organization: Organization, plan_trial_id: int, actor, now: datetime | None = None
) -> OrganizationTrial:
    """Start the organization's one free trial (owners only). Raises ValidationError (already
    had one, not on the free plan, trial unavailable: nothing written) or PermissionDenied."""
    membership = (
        Membership.objects.filter(organization=organization, user=actor).first()
        if actor is not None and actor.is_authenticated
        else None
    )
    if membership is None or membership.role != Role.OWNER:
        raise PermissionDenied(OWNERS_ONLY)
    plan_trial = (
        PlanTrial.objects.filter(pk=plan_trial_id, active=True).select_related("plan").first()
    )
    if plan_trial is None:
        raise ValidationError(NOT_AVAILABLE)
    try:
        return _start(
            organization=organization,
            plan_trial=plan_trial,
            actor=actor,
            now=now or timezone.now(),
        )
    except IntegrityError:  # a concurrent start won the unique row
        raise ValidationError(ALREADY) from None


def trials_end_due(*, now: datetime | None = None) -> int:
    """Beat task: every trial past its end returns the organization to the free plan (the trial
    credits expire through `grants_expire_due`). Idempotent: an ended trial is skipped."""
    now = now or timezone.now()
    done = 0
    due = OrganizationTrial.objects.filter(ended_at__isnull=True, ends_at__lte=now)
    for trial_id, org_id in list(due.values_list("pk", "organization_id")):
        with transaction.atomic(durable=True):
            # Lock order: the subscription, then the trial (as a converting `activate` does).
            sub = _lock(Organization(pk=org_id))
            trial = (
                OrganizationTrial.objects.select_for_update()
                .select_related("organization", "plan_trial__plan")
                .get(pk=trial_id)
            )
            if trial.ended_at is not None:
                continue
            if sub.status == SubscriptionStatus.TRIALING and not sub.stripe_subscription_id:
                downgrade_to_free(
                    sub,
                    now=now,
                    reason=f"Your free trial of {trial.plan_trial.plan.name} ended.",
                    dedupe=f"trial-ended:{trial.pk}",
                )
            OrganizationTrial.objects.filter(pk=trial.pk).update(ended_at=now)
            audit_record(action="trial.ended", organization=trial.organization, target=trial)
            done += 1
    return done


def trial_end(
    *, organization: Organization, actor, now: datetime | None = None
) -> OrganizationTrial:
    """End the organization's running trial now (owners only): back to the free plan through
    `downgrade_to_free` (like any downgrade, the credits already granted stay until they
    expire at the trial's planned end). Idempotent: a trial already ended
    (or converted to a paid subscription) is returned unchanged. Raises ValidationError when
    the organization never had a trial, or PermissionDenied."""
    membership = (
        Membership.objects.filter(organization=organization, user=actor).first()
        if actor is not None and actor.is_authenticated
        else None
    )
    if membership is None or membership.role != Role.OWNER:
        raise PermissionDenied(OWNERS_ONLY_END)
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        sub = _lock(organization)  # lock order: the subscription, then the trial
        trial = (
            OrganizationTrial.objects.select_for_update()
            .select_related("organization", "plan_trial__plan", "grant")
            .filter(organization=organization)
            .first()
        )
        if trial is None:
            raise ValidationError(NOT_TRIALING)
        if trial.ended_at is not None:
            return trial
        if sub.status == SubscriptionStatus.TRIALING and not sub.stripe_subscription_id:
            downgrade_to_free(
                sub,
                now=now,
                reason=f"Your free trial of {trial.plan_trial.plan.name} was ended early.",
                dedupe=f"trial-ended:{trial.pk}",
            )
        OrganizationTrial.objects.filter(pk=trial.pk).update(ended_at=now)
        trial.ended_at = now
        audit_record(
            action="trial.ended",
            organization=organization,
            actor=actor,
            target=trial,
            data={"early": True},
        )
    return trial
