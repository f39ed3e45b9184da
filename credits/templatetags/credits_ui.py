"""Template helpers of the credits web UI: credit and date formatting (`config.web.formats`) and the
balance card's data (so any page can `{% include "credits/partials/balance_card.html" %}`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from config.web.formats import format_credits, format_datetime

register = template.Library()


@register.filter(name="credits")
def credits_filter(value, arg: str = "") -> str:
    """`{{ x|credits }}` → "1,250.5"; `{{ x|credits:"exact" }}` → "1,250.500";
    `{{ x|credits:"signed" }}` / `"signed-exact"` add a "+" to positive amounts."""
    return format_credits(value, exact="exact" in arg, signed="signed" in arg)


@register.filter
def when(value, arg: str = "") -> str:
    """`{{ x|when }}` → "2 Dec 2026, 09:53:33" (UTC), the one date format of the customer
    pages; `{{ x|when:"ms" }}` adds milliseconds."""
    return format_datetime(value, ms=arg == "ms")


@register.filter
def percent_of(part, whole) -> str:
    """`part` as a percentage of `whole`, clamped to 0–100, for bar widths ("37.5")."""
    try:
        part, whole = Decimal(part), Decimal(whole)
    except (InvalidOperation, TypeError, ValueError):
        return "0"
    if whole <= 0:
        return "0"
    pct = max(Decimal(0), min(Decimal(100), part * 100 / whole))
    return f"{pct:.1f}"


@register.simple_tag(takes_context=True)
def credit_card(context):
    """The balance card's data for the active organization (the page's own when it has it)."""
    from credits.views import card_context

    if context.get("credit_card"):
        return context["credit_card"]
    request = context.get("request")
    organization = getattr(request, "organization", None)
    if organization is None:
        return None
    return card_context(organization)
