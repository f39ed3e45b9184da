"""What the billing page and the API show about free trials and referrals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Sum

from accounts.models import FREE_PLAN_SLUG, Organization, Subscription, SubscriptionStatus
from credits.trials.models import OrganizationTrial, PlanTrial, Referral

TRIAL_REFUSED = (
    "During a free trial you can subscribe to the trial's plan or end the trial; "
    "other plan changes wait until then."
)


def trialing_without_card(subscription: Subscription | None) -> bool:
    """On a free trial (no Stripe subscription): plan changes and cancellation make no sense;
    subscribing to the trial's plan converts it."""
    return bool(
        subscription is not None
        and subscription.status == SubscriptionStatus.TRIALING
        and not subscription.stripe_subscription_id
    )


@dataclass(frozen=True)
class TrialStatus:
    trial: OrganizationTrial | None  # the organization's trial, running or ended
    offers: list[PlanTrial]  # trials it can start now (free plan, never had one)
    referral_credits: int


def trial_status(*, organization: Organization, subscription: Subscription | None) -> TrialStatus:
    trial = (
        OrganizationTrial.objects.filter(organization=organization)
        .select_related("plan_trial__plan", "grant")
        .first()
    )
    offers = []
    if trial is None and subscription is not None and subscription.plan.slug == FREE_PLAN_SLUG:
        offers = list(PlanTrial.objects.filter(active=True).select_related("plan"))
    return TrialStatus(trial=trial, offers=offers, referral_credits=settings.REFERRAL_CREDITS)


@dataclass(frozen=True)
class ReferralSummary:
    count: int  # organizations this one referred (and was credited for)
    credits_earned: Decimal  # the referrer grants' amounts
    credits_per_referral: int


def referral_summary(*, organization: Organization) -> ReferralSummary:
    totals = Referral.objects.filter(referrer=organization).aggregate(
        count=Count("pk"), earned=Sum("referrer_grant__amount")
    )
    return ReferralSummary(
        count=totals["count"],
        credits_earned=totals["earned"] or Decimal(0),
        credits_per_referral=settings.REFERRAL_CREDITS,
    )
