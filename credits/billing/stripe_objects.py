"""Reading Stripe objects as webhooks deliver them: plain JSON whose shape depends on the API
version of the endpoint (e.g. an invoice's subscription is `subscription` before 2025-03 and
`parent.subscription_details.subscription` after; a subscription's period moved onto its items;
a line's price is `price`, `plan` or `pricing.price_details.price`). Each helper accepts every
shape we know."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def ref_id(value) -> str:
    """An expandable field: an id, an expanded object, or nothing → the id or ""."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def ts(value) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def metadata(obj: Obj | None) -> dict:
    value = (obj or {}).get("metadata")
    return value if isinstance(value, dict) else {}


# --- Invoices ---------------------------------------------------------------------------------


def invoice_subscription_id(invoice: Obj) -> str:
    sid = ref_id(invoice.get("subscription"))
    if sid:
        return sid
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    sid = ref_id(details.get("subscription"))
    if sid and (parent.get("type") in (None, "subscription_details")):
        return sid
    return ""


def invoice_subscription_metadata(invoice: Obj) -> dict:
    for details in (
        (invoice.get("parent") or {}).get("subscription_details"),
        invoice.get("subscription_details"),
    ):
        if isinstance(details, dict) and isinstance(details.get("metadata"), dict):
            return details["metadata"]
    return {}


def _lines(invoice: Obj) -> list[Obj]:
    lines = invoice.get("lines") or {}
    data = lines.get("data") if isinstance(lines, dict) else lines
    return [line for line in (data or []) if isinstance(line, dict)]


def _line_is_proration(line: Obj) -> bool:
    if line.get("proration"):
        return True
    parent = line.get("parent") or {}
    for key in ("subscription_item_details", "invoice_item_details"):
        details = parent.get(key) or {}
        if details.get("proration") and parent.get("type") == key:
            return True
    return False


def _line_is_subscription(line: Obj) -> bool:
    if line.get("type") == "subscription" or line.get("subscription_item"):
        return True
    parent = line.get("parent") or {}
    return parent.get("type") == "subscription_item_details"


def line_price_id(line: Obj) -> str:
    pricing = line.get("pricing") or {}
    details = pricing.get("price_details") or {}
    return ref_id(details.get("price")) or ref_id(line.get("price")) or ref_id(line.get("plan"))


def invoice_subscription_line(invoice: Obj) -> Obj | None:
    """The line billing the subscription's (new) period: a subscription line that is not a
    proration, the latest-starting one."""
    candidates = [
        line
        for line in _lines(invoice)
        if _line_is_subscription(line) and not _line_is_proration(line)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda line: (line.get("period") or {}).get("start") or 0)


def invoice_period(invoice: Obj) -> tuple[datetime | None, datetime | None]:
    """The service period an invoice of a subscription pays for."""
    line = invoice_subscription_line(invoice)
    if line is not None and line.get("period"):
        return ts(line["period"].get("start")), ts(line["period"].get("end"))
    # Without lines: a cycle invoice's period_end is when the new period starts.
    return ts(invoice.get("period_end")), None


def invoice_price_id(invoice: Obj) -> str:
    line = invoice_subscription_line(invoice)
    return line_price_id(line) if line is not None else ""


# --- Subscriptions ----------------------------------------------------------------------------


def subscription_items(subscription: Obj) -> list[Obj]:
    items = subscription.get("items") or {}
    data = items.get("data") if isinstance(items, dict) else items
    return [item for item in (data or []) if isinstance(item, dict)]


def subscription_price_id(subscription: Obj) -> str:
    for item in subscription_items(subscription):
        price = ref_id(item.get("price")) or ref_id(item.get("plan"))
        if price:
            return price
    return ref_id(subscription.get("plan"))


def subscription_period(subscription: Obj) -> tuple[datetime | None, datetime | None]:
    start, end = subscription.get("current_period_start"), subscription.get("current_period_end")
    if start is None:
        items = subscription_items(subscription)
        if items:
            start = items[0].get("current_period_start")
            end = items[0].get("current_period_end")
    return ts(start), ts(end)


# --- Payments ---------------------------------------------------------------------------------


def charge_payment_intent_id(charge: Obj) -> str:
    pi = ref_id(charge.get("payment_intent"))
    if pi:
        return pi
    details = (charge.get("payment_method_details") or {}).get("payment_intent")
    return ref_id(details)
