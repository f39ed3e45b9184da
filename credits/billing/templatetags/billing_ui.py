"""Template helpers of the billing UI: money formatting and the site-wide past-due banner
(`{% past_due_banner as banner %}` in `billing/partials/past_due_banner.html`, included by
base.html)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from config.web.formats import format_usd, to_decimal

register = template.Library()


@register.filter
def usd(value) -> str:
    """`{{ 1234.5|usd }}` → "$1,234.50" (amounts; never through float)."""
    return format_usd(value)


@register.filter
def usd_rate(value) -> str:
    """A per-unit price with its significant decimals: 0.025 → "$0.025", 9 → "$9"."""
    amount = to_decimal(value)
    if amount is None:
        return ""
    text = f"{amount.normalize():f}"
    if "." in text and len(text.split(".")[1]) == 1:
        text += "0"
    return f"${text}"


@register.filter
def cents(value) -> str:
    """Stripe amounts (integer cents) → "$9.00"."""
    try:
        return usd(Decimal(int(value)) / 100)
    except (TypeError, ValueError):
        return ""


@register.simple_tag(takes_context=True)
def past_due_banner(context):
    """The active organization's billing status when its subscription is past due, else None
    (one cheap query per page in the common case)."""
    request = context.get("request")
    organization = getattr(request, "organization", None)
    if organization is None:
        return None
    from accounts.models import Subscription, SubscriptionStatus

    if not Subscription.objects.filter(
        organization=organization, status=SubscriptionStatus.PAST_DUE
    ).exists():
        return None
    from credits.billing.selectors import billing_status

    status = billing_status(organization=organization)
    if not status.past_due:
        return None
    membership = getattr(request, "membership", None)
    return {
        "status": status,
        "can_manage": bool(membership and membership.can_manage),
    }
