"""Dashboard helpers of credits: the usage chart of the organization's current period, for the
accounts dashboard (`{% load credits_dashboard %}{% period_usage_chart as chart %}` then
`{% include "credits/partials/usage_chart.html" %}`), which cannot import this app."""

from __future__ import annotations

from datetime import UTC

from django import template
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from credits import selectors

register = template.Library()

DEFAULT_DAYS = 30  # without a subscription period
MIN_DAYS = 7  # a period that just began still shows a week
MAX_DAYS = 93


def period_days(organization, now) -> int:
    """Days from the first day of the current subscription period to today, both included."""
    try:
        start = organization.subscription.current_period_start
    except ObjectDoesNotExist:
        return DEFAULT_DAYS
    if start is None:
        return DEFAULT_DAYS
    days = (now.astimezone(UTC).date() - start.astimezone(UTC).date()).days + 1
    return max(MIN_DAYS, min(MAX_DAYS, days))


@register.simple_tag(takes_context=True)
def period_usage_chart(context):
    """The credits usage chart (credits.views.usage_chart) over the current period."""
    from credits.views import usage_chart

    organization = getattr(context.get("request"), "organization", None)
    if organization is None:
        return None
    now = timezone.now()
    days = period_days(organization, now)
    return usage_chart(selectors.usage_daily(organization=organization, days=days, now=now))
