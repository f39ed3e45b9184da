import logging

from credits.services import period_open
from credits.trials.referrals import referral_record


def on_subscription_period_opened(
    sender, *, subscription, previous_start=None, previous_end=None, **kwargs
) -> None:
    period_open(subscription=subscription, previous_start=previous_start, previous_end=previous_end)


def on_organization_signed_up(sender, *, organization, referral_code="", **kwargs) -> None:
    """A sign-up through `?ref=CODE` credits both organizations (refusals write nothing)."""
    if not referral_code:
        return
    try:
        referral_record(referred=organization, code=referral_code)
    except Exception:  # the sign-up is done; a failed referral must not turn it into an error
        logging.getLogger(__name__).exception("referral of organization %s failed", organization.pk)
