"""Against localstripe (a fake but stateful Stripe server, started by the `localstripe_url`
fixture on a free local port; the gateway points at it through STRIPE_API_BASE): catalog sync,
customer creation, a subscription whose invoice is paid, an off-session PaymentIntent for auto
top-up — with localstripe's own signed webhooks delivered to our live test server and
processed."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
import requests
from django.utils import timezone

from accounts.models import Plan, Subscription
from credits.billing import gateway as gw
from credits.billing import topup, webhooks
from credits.billing.catalog import stripe_sync
from credits.billing.customers import customer_ensure
from credits.billing.models import (
    AutoTopUp,
    CreditPack,
    Purchase,
    PurchaseStatus,
    StripeEvent,
    StripeEventStatus,
)
from credits.models import CreditGrant, GrantSource
from tests.billing.stripe_events import SECRET
from tests.factories import UserFactory, account_of, make_org

pytestmark = pytest.mark.django_db(transaction=True)

HOOK = "gpucredits-tests"


def wait_for(predicate, *, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def webhooks_to_us(localstripe, live_server):
    """localstripe delivers its events, signed with our secret, to our live server."""
    target = f"{live_server.url}/stripe/webhook/"
    r = requests.post(
        f"{localstripe}/_config/webhooks/{HOOK}", json={"url": target, "secret": SECRET}, timeout=5
    )
    assert r.ok, r.text
    yield target
    # Late events of this test must not reach the next one.
    requests.post(
        f"{localstripe}/_config/webhooks/{HOOK}",
        json={"url": "http://127.0.0.1:9/", "secret": SECRET},
        timeout=5,
    )


def processed(event_type: str, **payload_filter):
    qs = StripeEvent.objects.filter(type=event_type, status=StripeEventStatus.PROCESSED)
    for key, value in payload_filter.items():
        qs = qs.filter(**{f"payload__data__object__{key}": value})
    return qs.first()


def test_stripe_sync_creates_products_and_plans_once(localstripe, catalog):
    first = stripe_sync()
    starter = Plan.objects.get(slug="starter")
    assert starter.stripe_price_id == "gpuc-plan-starter-monthly-usd-900"
    plan = requests.get(
        f"{localstripe}/v1/plans/{starter.stripe_price_id}", auth=("sk_test_x", ""), timeout=5
    ).json()
    assert (plan["amount"], plan["interval"], plan["product"]) == (
        900,
        "month",
        "gpuc-plan-starter",
    )
    second = stripe_sync()
    assert [line.price_id for line in second] == [line.price_id for line in first]
    assert not any(line.changed for line in second)
    # localstripe has no one-time prices: packs fall back to inline price data in Checkout.
    assert not CreditPack.objects.exclude(stripe_price_id="").exists()


def test_customer_creation(localstripe, catalog):
    owner = UserFactory(email="boss@acme.test")
    org = make_org(slug="acme-ls", plan="free", owner=owner)
    customer = customer_ensure(organization=org)
    assert customer.stripe_customer_id.startswith("cus_")
    remote = gw.get_gateway().customer_retrieve(customer.stripe_customer_id)
    assert remote["metadata"] == {"organization": "acme-ls", "organization_id": str(org.pk)}
    assert remote["email"] == "boss@acme.test" and remote["name"] == org.name
    assert customer_ensure(organization=org).pk == customer.pk


def test_a_subscription_whose_invoice_is_paid_starts_the_plan_via_real_webhooks(
    webhooks_to_us, catalog, mailoutbox
):
    stripe_sync()
    org = make_org(slug="sub-ls", plan="free", owner=UserFactory())
    customer = customer_ensure(organization=org)
    gateway = gw.get_gateway()
    gateway.payment_method_attach(
        payment_method_id="pm_card_visa", customer_id=customer.stripe_customer_id
    )
    starter = Plan.objects.get(slug="starter")
    remote = gateway.subscription_create(
        customer_id=customer.stripe_customer_id,
        price_id=starter.stripe_price_id,
        metadata={"organization": org.slug, "plan": "starter"},
        idempotency_key=f"test-subscription:{org.pk}",
    )
    assert remote["status"] == "active"

    paid = wait_for(
        lambda: processed("invoice.payment_succeeded", subscription=remote["id"]),
        what="invoice.payment_succeeded processed",
    )
    assert paid.signature_valid and paid.organization_id == org.pk
    sub = Subscription.objects.select_related("plan").get(organization=org)
    assert (sub.plan.slug, sub.stripe_subscription_id, sub.stripe_customer_id) == (
        "starter",
        remote["id"],
        customer.stripe_customer_id,
    )
    period = remote["items"]["data"][0]["plan"]  # localstripe: legacy plan on the item
    assert period["id"] == starter.stripe_price_id
    grants = CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PLAN)
    assert sorted(g.amount for g in grants) == [D(50), D(500)]

    # Every delivery verified; events that arrived before the activation were parked and
    # succeed on retry; the others are processed or ignored. Nothing applied twice.
    wait_for(
        lambda: StripeEvent.objects.filter(type="customer.subscription.created").exists(),
        what="customer.subscription.created delivered",
    )
    StripeEvent.objects.filter(status=StripeEventStatus.FAILED).update(
        last_attempt_at=timezone.now() - timedelta(minutes=10)
    )
    webhooks.retry_failed()
    assert not StripeEvent.objects.exclude(
        status__in=[StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED]
    ).exists()
    assert not StripeEvent.objects.filter(signature_valid=False).exists()
    assert sorted(
        g.amount
        for g in CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PLAN)
    ) == [D(50), D(500)]
    assert any("Receipt" in m.subject for m in mailoutbox)


def test_auto_top_up_charges_a_payment_intent_off_session(webhooks_to_us, catalog, mailoutbox):
    owner = UserFactory()
    org = make_org(slug="topup-ls", plan="free", owner=owner)  # 50 credits
    customer = customer_ensure(organization=org)
    gw.get_gateway().payment_method_attach(
        payment_method_id="pm_card_visa", customer_id=customer.stripe_customer_id
    )
    topup.auto_top_up_configure(
        organization=org,
        actor=owner,
        enabled=True,
        threshold_credits="100",
        pack=CreditPack.objects.get(slug="credits-500"),
    )
    topup.balance_watch()
    purchase = Purchase.objects.get(organization=org)
    assert purchase.status == PurchaseStatus.PAID
    assert purchase.stripe_payment_intent_id.startswith("pi_")
    assert account_of(org).available == D(550)

    event = wait_for(
        lambda: processed("payment_intent.succeeded", id=purchase.stripe_payment_intent_id),
        what="payment_intent.succeeded processed",
    )
    assert event.payload["data"]["object"]["metadata"]["purchase"] == str(purchase.pk)
    assert event.payload["data"]["object"]["amount"] == 1000
    grants = CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PURCHASE)
    assert [g.amount for g in grants] == [D(500)]  # granted once, by whichever came first

    # A card that is declined off-session: the top-up fails, is disabled, the owner is told.
    gw.get_gateway().payment_method_attach(
        payment_method_id="pm_card_chargeCustomerFail", customer_id=customer.stripe_customer_id
    )
    from credits import ledger

    topup.balance_watch()  # 550 ≥ 100: re-armed for the next crossing
    hold = ledger.hold_create(account=account_of(org), amount=D(500), key="spend-down")
    ledger.hold_capture(hold=hold)  # 50 left: a new crossing
    topup.balance_watch()
    failed = Purchase.objects.filter(organization=org).order_by("-pk").first()
    assert failed.status == PurchaseStatus.FAILED
    assert "declined" in failed.failure_reason
    assert AutoTopUp.objects.get(organization=org).enabled is False
    assert any("Auto top-up failed" in m.subject for m in mailoutbox)
    assert account_of(org).available == D(50)
