"""Realistic Stripe webhook events for tests: full-shape objects from the fixture file with the
fields a test is about overridden, wrapped in an event and signed like Stripe does
(`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint secret>`)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

FIXTURES = json.loads(
    (Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text(encoding="utf-8")
)
SECRET = "whsec_test_billing_secret"


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def stripe_object(kind: str, **overrides) -> dict:
    obj = copy.deepcopy(FIXTURES[kind])
    obj.update(overrides)
    return obj


def event(event_type: str, obj: dict, *, event_id: str | None = None, created=None) -> dict:
    envelope = copy.deepcopy(FIXTURES["event"])
    envelope.update(
        id=event_id or uid("evt_test"),
        type=event_type,
        created=int(created if created is not None else time.time()),
        api_version="2026-10-28.endive",
        data={"object": obj},
    )
    return envelope


def body_of(evt: dict) -> bytes:
    return json.dumps(evt).encode()


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(timestamp if timestamp is not None else time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def post(client, payload, *, secret: str = SECRET, signature: str | None = None):
    """POST an event (dict, or raw bytes) to the webhook endpoint as Stripe would."""
    body = payload if isinstance(payload, bytes) else body_of(payload)
    header = signature if signature is not None else sign(body, secret)
    response = client.post(
        "/stripe/webhook/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=header,
    )
    response.ok = response.status_code == 200  # like requests' Response.ok, for brevity
    return response


# --- Objects --------------------------------------------------------------------------------------


def pack_session(
    org_slug: str,
    *,
    pack: str = "credits-500",
    session_id: str | None = None,
    customer: str | None = None,
    payment_intent: str | None = None,
    payment_status: str = "paid",
    amount_total: int = 1000,
) -> dict:
    return stripe_object(
        "checkout.session",
        id=session_id or uid("cs_test"),
        client_reference_id=org_slug,
        metadata={"kind": "credit_pack", "pack": pack},
        mode="payment",
        status="complete",
        payment_status=payment_status,
        customer=customer,
        payment_intent=payment_intent or uid("pi"),
        amount_total=amount_total,
        amount_subtotal=amount_total,
        currency="usd",
    )


def subscription_session(
    org_slug: str,
    *,
    plan: str = "starter",
    subscription: str,
    customer: str,
    session_id: str | None = None,
) -> dict:
    return stripe_object(
        "checkout.session",
        id=session_id or uid("cs_test"),
        client_reference_id=org_slug,
        metadata={"kind": "subscription", "plan": plan},
        mode="subscription",
        status="complete",
        payment_status="paid",
        customer=customer,
        subscription=subscription,
        payment_intent=None,
        amount_total=900,
        currency="usd",
    )


def subscription_invoice(
    *,
    subscription: str,
    customer: str,
    price: str,
    period_start: int,
    period_end: int,
    billing_reason: str = "subscription_cycle",
    amount: int = 900,
    invoice_id: str | None = None,
    status: str = "paid",
    attempt_count: int = 1,
    subscription_metadata: dict | None = None,
) -> dict:
    """A subscription invoice in the current API shape (parent.subscription_details, line
    pricing.price_details), as the fixture has it."""
    invoice = stripe_object("invoice")
    line = copy.deepcopy(invoice["lines"]["data"][0])
    line.update(
        id=uid("il"),
        amount=amount,
        period={"start": period_start, "end": period_end},
        pricing={
            "type": "price_details",
            "price_details": {"price": price, "product": "prod_test"},
            "unit_amount_decimal": str(amount),
        },
        parent={
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
                "subscription_item": uid("si"),
            },
        },
    )
    invoice.update(
        id=invoice_id or uid("in"),
        customer=customer,
        billing_reason=billing_reason,
        status=status,
        amount_due=amount,
        amount_paid=amount if status == "paid" else 0,
        amount_remaining=0 if status == "paid" else amount,
        attempt_count=attempt_count,
        period_start=period_start,
        period_end=period_start,
        lines={**invoice["lines"], "data": [line]},
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": subscription_metadata or {},
                "subscription": subscription,
            },
        },
        subscription=None,
    )
    return invoice


def subscription_obj(
    *,
    subscription: str,
    customer: str,
    price: str,
    status: str = "active",
    cancel_at_period_end: bool = False,
    period_start: int | None = None,
    period_end: int | None = None,
) -> dict:
    sub = stripe_object("subscription")
    item = copy.deepcopy(sub["items"]["data"][0])
    item["price"] = {**item["price"], "id": price}
    item["plan"] = {**item["plan"], "id": price}
    item["subscription"] = subscription
    if period_start is not None:
        item["current_period_start"] = period_start
        item["current_period_end"] = period_end
    sub.update(
        id=subscription,
        customer=customer,
        status=status,
        cancel_at_period_end=cancel_at_period_end,
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        items={**sub["items"], "data": [item]},
        metadata={},
    )
    return sub


def charge_refunded(
    *, payment_intent: str, amount: int, amount_refunded: int, charge_id: str | None = None
) -> dict:
    return stripe_object(
        "charge",
        id=charge_id or uid("ch"),
        payment_intent=payment_intent,
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount_refunded,
        refunded=amount_refunded >= amount,
        captured=True,
        status="succeeded",
    )
