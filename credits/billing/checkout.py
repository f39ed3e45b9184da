"""What the billing page does with Stripe: Checkout for a plan or a credit pack, the Customer
Portal (cards, invoices, cancellation), plan change and cancellation of a running subscription.

Checkout sessions carry exactly what the spec fixes: ``client_reference_id`` = organization
slug and ``metadata`` = ``{"kind": "credit_pack", "pack": <slug>}`` or
``{"kind": "subscription", "plan": <slug>}``. The credits are granted by the webhook
(`credits.billing.handlers`), never by the redirect back to the site.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization, Plan, Subscription, SubscriptionStatus
from accounts.services import audit_record
from config.errors import ServiceError, ValidationError
from credits.billing import gateway as gw
from credits.billing.access import require_manager
from credits.billing.catalog import usd_to_cents
from credits.billing.customers import customer_ensure
from credits.billing.models import (
    CreditPack,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    StripeCustomer,
)
from credits.billing.subscriptions import subscription_updated


def _urls(success_url: str | None, cancel_url: str | None) -> dict:
    return {
        "success_url": success_url or settings.STRIPE_CHECKOUT_SUCCESS_URL,
        "cancel_url": cancel_url or settings.STRIPE_CHECKOUT_CANCEL_URL,
    }


def checkout_for_pack(
    *,
    organization: Organization,
    pack: CreditPack,
    actor,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> str:
    """A Checkout session (payment mode) for one credit pack. Returns its URL. The card is
    saved for later off-session use (auto top-up)."""
    require_manager(organization=organization, actor=actor)
    if not pack.active:
        raise ValidationError("This credit pack is not offered.", errors={"pack": ["Inactive."]})
    customer = customer_ensure(organization=organization)
    purchase = Purchase.objects.create(
        organization=organization,
        kind=PurchaseKind.CREDIT_PACK,
        pack=pack,
        credits=pack.credits,
        amount_usd=pack.price_usd,
        currency=settings.STRIPE_CURRENCY,
        actor=actor if actor is not None and actor.is_authenticated else None,
    )
    if pack.stripe_price_id:
        line_item = {"price": pack.stripe_price_id, "quantity": 1}
    else:  # not synced (or a server without one-time prices): inline price data
        line_item = {
            "quantity": 1,
            "price_data": {
                "currency": settings.STRIPE_CURRENCY,
                "unit_amount": usd_to_cents(pack.price_usd),
                "product_data": {"name": f"{settings.SITE_NAME} {pack.name}"},
            },
        }
    params = {
        "mode": "payment",
        "customer": customer.stripe_customer_id,
        "client_reference_id": organization.slug,
        "metadata": {"kind": PurchaseKind.CREDIT_PACK.value, "pack": pack.slug},
        "line_items": [line_item],
        "payment_intent_data": {
            "setup_future_usage": "off_session",
            "metadata": {
                "kind": PurchaseKind.CREDIT_PACK.value,
                "organization": organization.slug,
                "pack": pack.slug,
                "purchase": str(purchase.pk),
            },
        },
        **_urls(success_url, cancel_url),
    }
    try:
        session = gw.get_gateway().checkout_session_create(
            params, idempotency_key=f"checkout:purchase:{purchase.pk}"
        )
    except ServiceError as exc:
        Purchase.objects.filter(pk=purchase.pk).update(
            status=PurchaseStatus.CANCELED, failure_reason=str(exc.detail)[:500]
        )
        raise
    Purchase.objects.filter(pk=purchase.pk).update(stripe_checkout_session_id=session["id"])
    audit_record(
        action="billing.checkout_started",
        organization=organization,
        actor=actor,
        target=purchase,
        data={"kind": "credit_pack", "pack": pack.slug, "session": session["id"]},
    )
    return session["url"]


def checkout_for_plan(
    *,
    organization: Organization,
    plan: Plan,
    actor,
    success_url: str | None = None,
    cancel_url: str | None = None,
) -> str:
    """A Checkout session (subscription mode) for a paid plan. Returns its URL. An organization
    already on a Stripe subscription changes plan with `subscription_change_plan` instead."""
    require_manager(organization=organization, actor=actor)
    if not plan.is_public or not plan.monthly_price_usd or plan.monthly_price_usd <= 0:
        raise ValidationError(
            f"The {plan.name} plan can't be bought online.", errors={"plan": ["Not for sale."]}
        )
    if not plan.stripe_price_id:
        raise ValidationError(
            f"The {plan.name} plan has no Stripe price yet (run manage.py stripe_sync).",
            errors={"plan": ["Not synced with Stripe."]},
        )
    subscription = _subscription(organization)
    if subscription is not None and subscription.stripe_subscription_id:
        raise ValidationError(
            "This organization already has a subscription: change its plan instead.",
            errors={"plan": ["Already subscribed."]},
        )
    customer = customer_ensure(organization=organization)
    params = {
        "mode": "subscription",
        "customer": customer.stripe_customer_id,
        "client_reference_id": organization.slug,
        "metadata": {"kind": "subscription", "plan": plan.slug},
        "line_items": [{"price": plan.stripe_price_id, "quantity": 1}],
        "subscription_data": {
            "metadata": {"organization": organization.slug, "plan": plan.slug},
        },
        **_urls(success_url, cancel_url),
    }
    session = gw.get_gateway().checkout_session_create(params, idempotency_key=None)
    audit_record(
        action="billing.checkout_started",
        organization=organization,
        actor=actor,
        data={"kind": "subscription", "plan": plan.slug, "session": session["id"]},
    )
    return session["url"]


def portal_url(*, organization: Organization, actor, return_url: str | None = None) -> str:
    """A Customer Portal session (cards, invoices, cancellation). Returns its URL."""
    require_manager(organization=organization, actor=actor)
    customer = customer_ensure(organization=organization)
    session = gw.get_gateway().portal_session_create(
        customer_id=customer.stripe_customer_id,
        return_url=return_url or settings.STRIPE_PORTAL_RETURN_URL,
    )
    return session["url"]


def _subscription(organization: Organization) -> Subscription | None:
    return Subscription.objects.filter(organization=organization).first()


def _stripe_subscription_id(organization: Organization) -> str:
    subscription = _subscription(organization)
    if subscription is None or not subscription.stripe_subscription_id:
        raise ValidationError(
            "This organization has no Stripe subscription: subscribe through Checkout.",
            errors={"plan": ["No subscription."]},
        )
    return subscription.stripe_subscription_id


def subscription_change_plan(*, organization: Organization, plan: Plan, actor) -> None:
    """Move a running subscription to another paid plan (the prorated difference is invoiced
    at once). The plan switches here and when the webhook confirms it (either first)."""
    require_manager(organization=organization, actor=actor)
    subscription_id = _stripe_subscription_id(organization)
    if not plan.is_public or not plan.stripe_price_id:
        raise ValidationError(
            f"The {plan.name} plan can't be bought online.", errors={"plan": ["Not for sale."]}
        )
    if _subscription(organization).status == SubscriptionStatus.PAST_DUE:
        raise ValidationError(
            "The last payment failed: update the card in the portal before changing plan."
        )
    updated = gw.get_gateway().subscription_change_price(
        subscription_id=subscription_id,
        price_id=plan.stripe_price_id,
        metadata={"organization": organization.slug, "plan": plan.slug},
        # Changes each time a change is applied (updated_at moves), so up → down → up within a
        # minute is three requests to Stripe, while a retried request stays one.
        idempotency_key=(
            f"change:{subscription_id}:{plan.slug}:"
            f"{_subscription(organization).updated_at.timestamp():.6f}"
        ),
    )
    audit_record(
        action="billing.plan_change_requested",
        organization=organization,
        actor=actor,
        data={"plan": plan.slug, "subscription": subscription_id},
    )
    with transaction.atomic():
        subscription_updated(
            organization=organization,
            subscription=updated,
            event_created=timezone.now(),
            now=timezone.now(),
        )


def subscription_cancel(*, organization: Organization, actor, at_period_end: bool = True) -> None:
    """Cancel the subscription at the end of the period (the plan and its credits stay until
    then; then the free plan), or at once."""
    require_manager(organization=organization, actor=actor)
    subscription_id = _stripe_subscription_id(organization)
    updated = gw.get_gateway().subscription_cancel(
        subscription_id=subscription_id, at_period_end=at_period_end
    )
    audit_record(
        action="billing.cancel_requested",
        organization=organization,
        actor=actor,
        data={"subscription": subscription_id, "at_period_end": at_period_end},
    )
    with transaction.atomic():
        subscription_updated(
            organization=organization,
            subscription=updated,
            event_created=timezone.now(),
            now=timezone.now(),
        )


def subscription_resume(*, organization: Organization, actor) -> None:
    """Undo a cancellation at period end."""
    require_manager(organization=organization, actor=actor)
    subscription_id = _stripe_subscription_id(organization)
    updated = gw.get_gateway().subscription_resume(subscription_id=subscription_id)
    with transaction.atomic():
        subscription_updated(
            organization=organization,
            subscription=updated,
            event_created=timezone.now(),
            now=timezone.now(),
        )


def invoices_recent(*, organization: Organization, limit: int = 12) -> list[dict]:
    """The organization's Stripe invoices, newest first (empty without a customer); each has
    `number`, `status`, `amount_due`, `amount_paid` (cents), `created`, `hosted_invoice_url`,
    `invoice_pdf`."""
    customer = StripeCustomer.objects.filter(organization=organization).first()
    if customer is None:
        return []
    return gw.get_gateway().invoices_list(customer_id=customer.stripe_customer_id, limit=limit)
