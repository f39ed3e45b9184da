"""What the billing page shows about free trials and referrals."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from accounts.models import Organization, Subscription
from credits.trials.models import OrganizationTrial, PlanTrial

FREE_PLAN_SLUG = "free"  # accounts.services.FREE_PLAN_SLUG (selectors may not import services)


@dataclass(frozen=True)
class TrialStatus:
    trial: OrganizationTrial | None  # the organization's trial, running or ended
    offers: list[PlanTrial]  # trials it can start now (free plan, never had one)
    referral_credits: int


def trial_status(*, organization: Organization, subscription: Subscription | None) -> TrialStatus:
    trial = (
        OrganizationTrial.objects.filter(organization=organization)
        .select_related("plan_trial__plan")
        .first()
    )
    offers = []
    if trial is None and subscription is not None and subscription.plan.slug == FREE_PLAN_SLUG:
        offers = list(PlanTrial.objects.filter(active=True).select_related("plan"))
    return TrialStatus(trial=trial, offers=offers, referral_credits=settings.REFERRAL_CREDITS)
