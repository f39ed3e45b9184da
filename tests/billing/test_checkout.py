"""What the billing page calls: Checkout sessions (the spec's metadata exactly), the Customer
Portal, plan change and cancellation, stripe_sync."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Plan
from config.errors import NotFound, PermissionDenied, ValidationError
from credits.billing import checkout
from credits.billing.errors import BillingNotConfigured
from credits.billing.models import CreditPack, Purchase, StripeCustomer
from tests.billing import stripe_events as se
from tests.billing.conftest import PRICES
from tests.factories import UserFactory, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory(email="owner@acme.test")


@pytest.fixture
def acme(catalog, owner):
    return make_org(slug="acme", plan="free", owner=owner)


def test_pack_checkout_carries_the_spec_metadata_and_saves_the_card(
    acme, owner, fake_gateway, settings
):
    pack = CreditPack.objects.get(slug="credits-2500")
    CreditPack.objects.filter(pk=pack.pk).update(stripe_price_id="price_pack_2500")
    pack.refresh_from_db()
    url = checkout.checkout_for_pack(organization=acme, pack=pack, actor=owner)
    (params,) = fake_gateway.params("checkout_session_create")
    assert params["client_reference_id"] == "acme"
    assert params["metadata"] == {"kind": "credit_pack", "pack": "credits-2500"}
    assert params["mode"] == "payment"
    assert params["line_items"] == [{"price": "price_pack_2500", "quantity": 1}]
    assert params["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert params["success_url"] == settings.STRIPE_CHECKOUT_SUCCESS_URL
    assert "{CHECKOUT_SESSION_ID}" in params["success_url"]
    customer = StripeCustomer.objects.get(organization=acme)
    assert params["customer"] == customer.stripe_customer_id
    purchase = Purchase.objects.get()
    assert url.endswith(purchase.stripe_checkout_session_id)
    assert (purchase.status, purchase.credits, purchase.actor) == ("pending", 2500, owner)
    # A second checkout reuses the customer.
    checkout.checkout_for_pack(organization=acme, pack=pack, actor=owner)
    assert fake_gateway.count("customer_create") == 1


def test_an_unsynced_pack_is_sold_with_inline_price_data(acme, owner, fake_gateway):
    pack = CreditPack.objects.get(slug="credits-500")
    checkout.checkout_for_pack(organization=acme, pack=pack, actor=owner)
    (params,) = fake_gateway.params("checkout_session_create")
    assert params["line_items"][0]["price_data"]["unit_amount"] == 1000


def test_the_completed_session_grants_through_the_webhook(client, acme, owner, fake_gateway):
    pack = CreditPack.objects.get(slug="credits-500")
    checkout.checkout_for_pack(organization=acme, pack=pack, actor=owner)
    session = dict(fake_gateway.sessions[Purchase.objects.get().stripe_checkout_session_id])
    session.update(status="complete", payment_status="paid", payment_intent="pi_1")
    session["amount_total"] = 1000
    assert se.post(client, se.event("checkout.session.completed", session)).ok
    purchase = Purchase.objects.get()
    assert purchase.status == "paid" and purchase.grant.amount == 500


def test_plan_checkout_carries_the_spec_metadata(acme, owner, fake_gateway):
    starter = Plan.objects.get(slug="starter")
    checkout.checkout_for_plan(organization=acme, plan=starter, actor=owner)
    (params,) = fake_gateway.params("checkout_session_create")
    assert params["client_reference_id"] == "acme"
    assert params["metadata"] == {"kind": "subscription", "plan": "starter"}
    assert params["mode"] == "subscription"
    assert params["line_items"] == [{"price": PRICES["starter"], "quantity": 1}]
    assert params["subscription_data"]["metadata"] == {"organization": "acme", "plan": "starter"}


def test_plan_checkout_refusals(acme, owner, fake_gateway):
    for slug in ("free", "enterprise"):
        with pytest.raises(ValidationError, match="can't be bought online"):
            checkout.checkout_for_plan(
                organization=acme, plan=Plan.objects.get(slug=slug), actor=owner
            )
    Plan.objects.filter(slug="starter").update(stripe_price_id="")
    with pytest.raises(ValidationError, match="stripe_sync"):
        checkout.checkout_for_plan(
            organization=acme, plan=Plan.objects.get(slug="starter"), actor=owner
        )
    acme.subscription.stripe_subscription_id = "sub_1"
    acme.subscription.save()
    with pytest.raises(ValidationError, match="already has a subscription"):
        checkout.checkout_for_plan(
            organization=acme, plan=Plan.objects.get(slug="creator"), actor=owner
        )
    assert fake_gateway.count("checkout_session_create") == 0


def test_only_owners_and_admins_may_pay(acme, fake_gateway):
    pack = CreditPack.objects.get(slug="credits-500")
    with pytest.raises(PermissionDenied):
        checkout.checkout_for_pack(organization=acme, pack=pack, actor=add_member(acme).user)
    with pytest.raises(NotFound):
        checkout.checkout_for_pack(organization=acme, pack=pack, actor=UserFactory())
    admin = add_member(acme, role="admin").user
    assert checkout.portal_url(organization=acme, actor=admin).startswith("https://billing")


def test_without_a_secret_key_billing_is_not_configured(acme, owner, settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(BillingNotConfigured):
        checkout.portal_url(organization=acme, actor=owner)


def test_plan_change_and_cancel_of_a_running_subscription(acme, owner, fake_gateway):
    customer = StripeCustomer.objects.create(organization=acme, stripe_customer_id="cus_acme")
    from credits.billing.subscriptions import activate

    activate(
        organization=acme,
        plan=Plan.objects.get(slug="starter"),
        customer_id=customer.stripe_customer_id,
        subscription_id="sub_acme",
        period_start=acme.subscription.current_period_start,
        via="test",
    )
    fake_gateway.subscriptions["sub_acme"] = fake_gateway._subscription(
        "sub_acme", PRICES["starter"], "cus_acme"
    )
    checkout.subscription_change_plan(
        organization=acme, plan=Plan.objects.get(slug="creator"), actor=owner
    )
    acme.subscription.refresh_from_db()
    assert acme.subscription.plan.slug == "creator"
    checkout.subscription_cancel(organization=acme, actor=owner)
    acme.subscription.refresh_from_db()
    assert acme.subscription.cancel_at_period_end is True
    checkout.subscription_resume(organization=acme, actor=owner)
    acme.subscription.refresh_from_db()
    assert acme.subscription.cancel_at_period_end is False


def test_stripe_sync_is_idempotent(catalog, fake_gateway):
    out = StringIO()
    call_command("stripe_sync", stdout=out)
    first = {p.slug: p.stripe_price_id for p in Plan.objects.filter(monthly_price_usd__gt=0)}
    assert set(first) == {"starter", "creator", "studio", "unlimited"}  # every priced plan
    assert all(v.startswith("price_fake") for v in first.values())
    packs = dict(CreditPack.objects.values_list("slug", "stripe_price_id"))
    assert all(packs.values())
    call_command("stripe_sync", stdout=(again := StringIO()))
    assert first == {
        p.slug: p.stripe_price_id for p in Plan.objects.filter(monthly_price_usd__gt=0)
    }
    assert "0 updated" in again.getvalue()
    # A price change makes a new price (the lookup key moves to it).
    Plan.objects.filter(slug="starter").update(monthly_price_usd=12)
    call_command("stripe_sync", stdout=StringIO())
    assert Plan.objects.get(slug="starter").stripe_price_id != first["starter"]
