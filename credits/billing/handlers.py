"""What each Stripe event type does. A handler runs inside the event's transaction (see
`credits.billing.webhooks`) and returns a `Result` (processed or ignored, with a note), or
raises: `RetryLater` (depends on an event not processed yet), `Unprocessable` (can never apply
as it is), or any other error (recorded; Stripe and our retry task try again).

Handlers derive every effect from Stripe object ids (Checkout session, PaymentIntent, charge,
invoice, subscription), never from the event id, so two different events reporting the same
fact (``invoice.paid`` and ``invoice.payment_succeeded``, ``checkout.session.completed`` and
``…async_payment_succeeded``) have one effect between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from accounts.models import Organization
from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from credits.billing import overage, purchases, subscriptions, topup
from credits.billing.customers import customer_link, organization_for_customer
from credits.billing.errors import RetryLater, Unprocessable
from credits.billing.models import Purchase, PurchaseKind, StripeCustomer, StripeEvent
from credits.billing.stripe_objects import (
    Obj,
    invoice_subscription_id,
    invoice_subscription_metadata,
    metadata,
    ref_id,
)
from credits.models import OverageRecord


@dataclass
class Context:
    event: StripeEvent
    payload: Obj
    created: datetime
    now: datetime
    organization: Organization | None = None

    @property
    def obj(self) -> Obj:
        return self.payload["data"]["object"]


@dataclass(frozen=True)
class Result:
    note: str
    ignored: bool = False


def ignored(note: str) -> Result:
    return Result(note, ignored=True)


Handler = Callable[[Context], Result | str]
HANDLERS: dict[str, Handler] = {}


def handles(*types: str):
    def register(fn: Handler) -> Handler:
        for event_type in types:
            HANDLERS[event_type] = fn
        return fn

    return register


# --- Organization lookup --------------------------------------------------------------------------


def _organization_from_reference(session: Obj) -> Organization:
    slug = session.get("client_reference_id")
    if not slug:
        raise Unprocessable(
            f"Checkout session {session.get('id')} has no client_reference_id "
            "(organization slug); nothing granted."
        )
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        raise Unprocessable(
            f"Unknown organization {slug!r} (client_reference_id of Checkout session "
            f"{session.get('id')}); nothing granted."
        )
    return organization


def _organization_for(obj: Obj, meta: dict) -> Organization | None:
    organization = organization_for_customer(ref_id(obj.get("customer")))
    if organization is None and meta.get("organization"):
        organization = Organization.objects.filter(slug=meta["organization"]).first()
    return organization


# --- Checkout ---------------------------------------------------------------------------------


@handles("checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_completed(ctx: Context) -> Result | str:
    session = ctx.obj
    kind = metadata(session).get("kind")
    if kind not in (PurchaseKind.CREDIT_PACK, "subscription"):
        return ignored("not a Checkout session of this app (metadata.kind missing or unknown)")
    organization = _organization_from_reference(session)
    ctx.organization = organization
    customer = ref_id(session.get("customer"))
    if customer:
        email = (session.get("customer_details") or {}).get("email") or ""
        customer_link(organization=organization, customer_id=customer, email=email)
    if kind == PurchaseKind.CREDIT_PACK:
        _purchase, note = purchases.checkout_completed(
            organization=organization, session=session, now=ctx.now
        )
        return note
    return subscriptions.checkout_completed(
        organization=organization, session=session, event_created=ctx.created
    )


@handles("checkout.session.async_payment_failed")
def checkout_payment_failed(ctx: Context) -> Result | str:
    session = ctx.obj
    if metadata(session).get("kind") != PurchaseKind.CREDIT_PACK:
        return ignored("not a credit pack Checkout session")
    organization = _organization_from_reference(session)
    ctx.organization = organization
    return purchases.checkout_payment_failed(organization=organization, session=session)


@handles("checkout.session.expired")
def checkout_expired(ctx: Context) -> Result | str:
    return purchases.checkout_expired(session=ctx.obj)


# --- Invoices ---------------------------------------------------------------------------------


def _is_overage(invoice: Obj) -> bool:
    if metadata(invoice).get("kind") == overage.KIND:
        return True
    return (
        bool(invoice.get("id"))
        and OverageRecord.objects.filter(stripe_invoice_id=invoice["id"]).exists()
    )


def _invoice_organization(ctx: Context, invoice: Obj) -> Organization:
    organization = _organization_for(invoice, invoice_subscription_metadata(invoice))
    if organization is None:
        raise RetryLater(
            f"No organization is linked to customer {ref_id(invoice.get('customer'))!r} yet."
        )
    ctx.organization = organization
    return organization


def _invoice_paid_webhook(organization: Organization | None, invoice: Obj, kind: str) -> None:
    """The `invoice.paid` webhook event, once per invoice (Stripe reports it twice)."""
    if organization is None or not invoice.get("id"):
        return
    webhook_event_emit(
        organization=organization,
        type=EventType.INVOICE_PAID,
        payload={
            "invoice": invoice["id"],
            "kind": kind,
            "amount_paid": invoice.get("amount_paid"),
            "currency": invoice.get("currency"),
        },
        dedupe_key=f"invoice_paid:{invoice['id']}",
    )


@handles("invoice.paid", "invoice.payment_succeeded")
def invoice_paid(ctx: Context) -> Result | str:
    invoice = ctx.obj
    if _is_overage(invoice):
        record = overage.record_for_invoice(invoice)
        ctx.organization = record.account.organization if record else None
        result = overage.invoice_paid(invoice=invoice, now=ctx.now)
        _invoice_paid_webhook(ctx.organization, invoice, "overage")
        return result
    subscription_id = invoice_subscription_id(invoice)
    if not subscription_id:
        return ignored("neither a subscription nor an overage invoice")
    organization = _invoice_organization(ctx, invoice)
    result = subscriptions.invoice_paid(
        organization=organization, invoice=invoice, subscription_id=subscription_id, now=ctx.now
    )
    _invoice_paid_webhook(organization, invoice, "subscription")
    return result


@handles("invoice.payment_failed")
def invoice_payment_failed(ctx: Context) -> Result | str:
    invoice = ctx.obj
    if _is_overage(invoice):
        return overage.invoice_payment_failed(invoice=invoice)
    subscription_id = invoice_subscription_id(invoice)
    if not subscription_id:
        return ignored("neither a subscription nor an overage invoice")
    organization = _invoice_organization(ctx, invoice)
    return subscriptions.invoice_payment_failed(
        organization=organization, invoice=invoice, subscription_id=subscription_id, now=ctx.now
    )


@handles("invoice.voided")
def invoice_voided(ctx: Context) -> Result | str:
    if not _is_overage(ctx.obj):
        return ignored("not an overage invoice")
    return overage.invoice_voided(invoice=ctx.obj)


# --- Subscriptions ----------------------------------------------------------------------------


@handles("customer.subscription.created", "customer.subscription.updated")
def subscription_updated(ctx: Context) -> Result | str:
    subscription = ctx.obj
    organization = _organization_for(subscription, metadata(subscription))
    if organization is None:
        return ignored(f"customer {ref_id(subscription.get('customer'))!r} is not linked")
    ctx.organization = organization
    return subscriptions.subscription_updated(
        organization=organization,
        subscription=subscription,
        event_created=ctx.created,
        now=ctx.now,
    )


@handles("customer.subscription.deleted")
def subscription_deleted(ctx: Context) -> Result | str:
    subscription = ctx.obj
    organization = _organization_for(subscription, metadata(subscription))
    if organization is None:
        return ignored(f"customer {ref_id(subscription.get('customer'))!r} is not linked")
    ctx.organization = organization
    return subscriptions.subscription_deleted(
        organization=organization, subscription=subscription, now=ctx.now
    )


@handles("customer.updated")
def customer_updated(ctx: Context) -> Result | str:
    customer = ctx.obj
    default = ref_id((customer.get("invoice_settings") or {}).get("default_payment_method"))
    updated = StripeCustomer.objects.filter(stripe_customer_id=customer.get("id", "")).update(
        default_payment_method_id=default
    )
    return f"default payment method {default or 'cleared'}" if updated else ignored("unknown")


# --- Payments ---------------------------------------------------------------------------------


@handles("charge.refunded")
def charge_refunded(ctx: Context) -> Result | str:
    charge = ctx.obj
    purchase = purchases.purchase_for_charge(charge)
    if purchase is None:
        if ref_id(charge.get("invoice")):
            return ignored(
                "refund of an invoice payment: plan credits are not taken back (docs/billing.md)"
            )
        raise RetryLater(
            f"No purchase is recorded for charge {charge.get('id')} / payment intent "
            f"{ref_id(charge.get('payment_intent'))!r} yet."
        )
    ctx.organization = purchase.organization
    return purchases.refund(purchase=purchase, charge=charge, now=ctx.now)


def _top_up_purchase(intent: Obj) -> Purchase | None:
    if metadata(intent).get("kind") != PurchaseKind.AUTO_TOP_UP:
        return None
    purchase_id = str(metadata(intent).get("purchase", ""))
    purchase = None
    if purchase_id.isdigit():
        purchase = Purchase.objects.filter(
            pk=int(purchase_id), kind=PurchaseKind.AUTO_TOP_UP
        ).first()
    if purchase is None and intent.get("id"):
        purchase = Purchase.objects.filter(stripe_payment_intent_id=intent["id"]).first()
    if purchase is None:
        raise Unprocessable(f"Auto top-up PaymentIntent {intent.get('id')} names no purchase.")
    return purchase


@handles("payment_intent.succeeded")
def payment_intent_succeeded(ctx: Context) -> Result | str:
    purchase = _top_up_purchase(ctx.obj)
    if purchase is None:
        return ignored("not an auto top-up")
    ctx.organization = purchase.organization
    purchase = topup.payment_intent_update(purchase_id=purchase.pk, intent=ctx.obj, now=ctx.now)
    return f"auto top-up {purchase.pk} {purchase.status}"


@handles("payment_intent.payment_failed")
def payment_intent_failed(ctx: Context) -> Result | str:
    purchase = _top_up_purchase(ctx.obj)
    if purchase is None:
        return ignored("not an auto top-up")
    ctx.organization = purchase.organization
    error = ctx.obj.get("last_payment_error") or {}
    purchase = topup.fail(
        purchase_id=purchase.pk,
        reason=error.get("message") or "The card was declined.",
        payment_intent=ctx.obj.get("id", ""),
    )
    return f"auto top-up {purchase.pk} {purchase.status}"
