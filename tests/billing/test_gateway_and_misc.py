"""The gateway's contract (signatures, error mapping, configuration), the smaller event handlers
and the email templates."""

from __future__ import annotations

import time

import pytest

from credits.billing import emails
from credits.billing import gateway as gw
from credits.billing.errors import (
    BillingNotConfigured,
    InvalidSignature,
    PaymentDeclined,
    StripeObjectNotFound,
)
from credits.billing.models import BillingEmail, Purchase, StripeCustomer
from tests.billing import stripe_events as se
from tests.billing.conftest import linked_org
from tests.factories import UserFactory, make_org


def test_signatures_match_stripes_scheme():
    body = b'{"id": "evt_1"}'
    t = int(time.time())
    header = gw.webhook_signature_header(payload=body, secret=se.SECRET, timestamp=t)
    assert header == se.sign(body, timestamp=t)
    gw.verify_webhook_signature(payload=body, header=header, secret=se.SECRET, tolerance_s=300)
    with pytest.raises(InvalidSignature):
        gw.verify_webhook_signature(payload=body, header=header, secret="whsec_x", tolerance_s=300)
    old = se.sign(body, timestamp=t - 301)
    with pytest.raises(InvalidSignature, match="tolerance"):
        gw.verify_webhook_signature(payload=body, header=old, secret=se.SECRET, tolerance_s=300)
    gw.verify_webhook_signature(payload=body, header=old, secret=se.SECRET, tolerance_s=0)


def test_the_gateway_follows_the_settings(settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:1"
    first = gw.get_gateway()
    assert gw.get_gateway() is first
    settings.STRIPE_API_BASE = "http://127.0.0.1:2"
    assert gw.get_gateway() is not first
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(BillingNotConfigured):
        gw.get_gateway()


@pytest.mark.django_db
def test_stripe_errors_become_project_errors(localstripe):
    gateway = gw.get_gateway()
    with pytest.raises(StripeObjectNotFound):
        gateway.customer_retrieve("cus_missing")
    customer = gateway.customer_create(
        name="X", email="", metadata={}, idempotency_key="errors-test"
    )
    gateway.payment_method_attach(
        payment_method_id="pm_card_chargeCustomerFail", customer_id=customer["id"]
    )
    with pytest.raises(PaymentDeclined) as declined:
        gateway.payment_intent_off_session(
            customer_id=customer["id"],
            payment_method_id=gateway.default_payment_method(customer["id"]),
            amount_cents=1000,
            metadata={},
            idempotency_key="errors-test-pi",
        )
    assert declined.value.code == "validation_error"  # the spec's codes only
    assert declined.value.extra["decline_code"] == "card_declined"


@pytest.mark.django_db
def test_an_expired_checkout_cancels_its_pending_purchase(client, catalog, fake_gateway):
    from credits.billing import checkout
    from credits.billing.models import CreditPack

    owner = UserFactory()
    org = make_org(slug="acme", plan="free", owner=owner)
    checkout.checkout_for_pack(
        organization=org, pack=CreditPack.objects.get(slug="credits-500"), actor=owner
    )
    purchase = Purchase.objects.get()
    session = se.pack_session("acme", session_id=purchase.stripe_checkout_session_id)
    session.update(status="expired", payment_status="unpaid")
    assert se.post(client, se.event("checkout.session.expired", session)).ok
    purchase.refresh_from_db()
    assert purchase.status == "canceled"


@pytest.mark.django_db
def test_customer_updated_records_the_default_card(client, catalog):
    org = linked_org("acme", customer="cus_acme")
    customer = se.stripe_object(
        "customer",
        id="cus_acme",
        invoice_settings={"default_payment_method": "pm_new", "custom_fields": None},
    )
    assert se.post(client, se.event("customer.updated", customer)).ok
    assert StripeCustomer.objects.get(organization=org).default_payment_method_id == "pm_new"
    other = se.stripe_object("customer", id="cus_other")
    response = se.post(client, se.event("customer.updated", other))
    assert response.json()["status"] == "ignored"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "context"),
    [
        (
            emails.RECEIPT,
            {"description": "500 credits", "amount": "10.00", "credits": 500, "reference": "pi"},
        ),
        (emails.PAYMENT_FAILED, {"description": "Starter", "amount": "9.00", "reason": "x"}),
        (emails.AUTO_TOP_UP_FAILED, {"reason": "declined", "threshold": 100, "amount": "10.00"}),
        (emails.LOW_BALANCE, {"threshold": 40, "available": 30, "auto_top_up": ""}),
        (emails.OVERAGE_INVOICE, {"credits": 100, "amount": "2.50", "plan": "starter"}),
        (emails.SUBSCRIPTION_DOWNGRADED, {"reason": "Canceled.", "plan_name": "Starter"}),
    ],
)
def test_every_email_renders_as_plain_text_and_is_sent_once(
    catalog, kind, context, django_capture_on_commit_callbacks, mailoutbox
):
    owner = UserFactory(email="owner@acme.test")
    org = make_org(slug="acme", plan="free", owner=owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert emails.queue(organization=org, kind=kind, dedupe_key="k", context=context)
        assert emails.queue(organization=org, kind=kind, dedupe_key="k", context=context) is None
    (message,) = mailoutbox
    assert message.to == ["owner@acme.test"] and message.subject
    assert "&amp;" not in message.body and "&#" not in message.body
    assert "{{" not in message.body and "GPU Credits" in message.body
    assert BillingEmail.objects.get().sent_at is not None
