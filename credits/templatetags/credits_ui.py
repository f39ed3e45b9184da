"""Template helpers of the credits web UI: exact credit formatting and the balance card's data
(so any page can `{% include "credits/partials/balance_card.html" %}`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()

MINUS = "\u2212"


def format_credits(value, *, exact: bool = False, signed: bool = False) -> str:
    """A credit amount for people: thousands separators, a real minus sign, 3 decimals when
    `exact`, else trailing zeros trimmed ("1,250.5"). Never goes through float."""
    if value is None or value == "":
        return ""
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    text = f"{abs(amount):,.3f}"
    if not exact:
        text = text.rstrip("0").rstrip(".")
    if amount < 0:
        return MINUS + text
    if signed and amount > 0:
        return "+" + text
    return text


@register.filter(name="credits")
def credits_filter(value, arg: str = "") -> str:
    """`{{ x|credits }}` → "1,250.5"; `{{ x|credits:"exact" }}` → "1,250.500";
    `{{ x|credits:"signed" }}` / `"signed-exact"` add a "+" to positive amounts."""
    return format_credits(value, exact="exact" in arg, signed="signed" in arg)


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
