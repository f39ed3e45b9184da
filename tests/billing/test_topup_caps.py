"""Auto top-up safety rails (issue 15): a maximum number of automatic purchases per month and
a cap on the credits bought per month. When one is hit no purchase is made, the owners get one
email for the month, the billing page says so, and it buys again next month — against
localstripe (real PaymentIntents) and the recording fake gateway."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from config.errors import ValidationError
from credits import ledger
from credits.billing import gateway as gw
from credits.billing import topup
from credits.billing.customers import customer_ensure
from credits.billing.models import AutoTopUp, CreditPack, Purchase, PurchaseStatus, StripeCustomer
from tests.factories import UserFactory, account_of, make_org


def enable(org, owner, **limits):
    return topup.auto_top_up_configure(
        organization=org,
        actor=owner,
        enabled=True,
        threshold_credits="100",
        pack=CreditPack.objects.get(slug="credits-500"),
        **limits,
    )


def spend_down(org, key: str) -> None:
    """Spend 500 credits: 550 → 50, a new crossing of the 100 threshold."""
    hold = ledger.hold_create(account=account_of(org), amount=D(500), key=key)
    ledger.hold_capture(hold=hold)


def capped_emails(mailoutbox) -> list:
    return [m for m in mailoutbox if "monthly limit" in m.subject]


@pytest.mark.django_db(transaction=True)
def test_localstripe_the_monthly_purchase_limit_stops_the_third_top_up_and_emails_once(
    localstripe, catalog, mailoutbox
):
    owner = UserFactory()
    org = make_org(slug="capped-ls", plan="free", owner=owner)  # 50 credits
    customer = customer_ensure(organization=org)
    gw.get_gateway().payment_method_attach(
        payment_method_id="pm_card_visa", customer_id=customer.stripe_customer_id
    )
    enable(org, owner, max_per_month=2)

    for round_ in range(2):
        topup.balance_watch()  # below: buys 500 with a real PaymentIntent
        assert account_of(org).available == D(550)
        topup.balance_watch()  # back above: re-armed
        spend_down(org, f"spend-{round_}")
    paid = Purchase.objects.filter(organization=org, status=PurchaseStatus.PAID)
    assert paid.count() == 2 and all(p.stripe_payment_intent_id.startswith("pi_") for p in paid)

    topup.balance_watch()  # the third would pass the limit of 2 a month
    topup.balance_watch()
    assert Purchase.objects.filter(organization=org).count() == 2
    assert account_of(org).available == D(50)
    config = AutoTopUp.objects.get(organization=org)
    assert config.enabled and config.capped_month == timezone.now().date().replace(day=1)
    assert len(capped_emails(mailoutbox)) == 1
    assert "2 automatic purchases" in capped_emails(mailoutbox)[0].body
    assert AuditEvent.objects.filter(action="billing.auto_top_up_capped").count() == 1

    # Next month the limit starts afresh.
    next_month = (timezone.now().replace(day=1) + timedelta(days=32)).replace(day=2)
    purchase = topup.auto_top_up_check(organization_id=org.pk, now=next_month)
    assert purchase is not None and purchase.status == PurchaseStatus.PAID
    assert account_of(org).available == D(550)


@pytest.mark.django_db(transaction=True)
def test_localstripe_the_monthly_credit_cap_stops_a_purchase_that_would_pass_it(
    localstripe, catalog, mailoutbox
):
    owner = UserFactory()
    org = make_org(slug="capcredits-ls", plan="free", owner=owner)
    customer = customer_ensure(organization=org)
    gw.get_gateway().payment_method_attach(
        payment_method_id="pm_card_visa", customer_id=customer.stripe_customer_id
    )
    enable(org, owner, monthly_cap_credits="900", max_per_month=None)

    topup.balance_watch()  # 500 of 900
    topup.balance_watch()
    spend_down(org, "spend")
    topup.balance_watch()  # 1000 > 900: stopped
    assert Purchase.objects.filter(organization=org).count() == 1
    assert account_of(org).available == D(50)
    assert len(capped_emails(mailoutbox)) == 1
    assert "900 credits" in capped_emails(mailoutbox)[0].body


# --- With the fake gateway: settings, the page ----------------------------------------------


@pytest.fixture
def org(catalog, fake_gateway):
    owner = UserFactory()
    org = make_org(slug="acme", plan="free", owner=owner)
    customer = fake_gateway.customer_create(name="Acme", email="", metadata={}, idempotency_key="c")
    fake_gateway.payment_method_attach(payment_method_id="pm_visa", customer_id=customer["id"])
    StripeCustomer.objects.create(organization=org, stripe_customer_id=customer["id"])
    return org


@pytest.mark.django_db
def test_limits_are_validated_and_new_limits_clear_the_stopped_notice(org):
    owner = org.memberships.get().user
    with pytest.raises(ValidationError):
        enable(org, owner, max_per_month=0)
    with pytest.raises(ValidationError):
        enable(org, owner, monthly_cap_credits="-5")
    config = enable(org, owner, max_per_month=1)
    AutoTopUp.objects.filter(pk=config.pk).update(capped_month=timezone.now().date())
    config = enable(org, owner, max_per_month=3)
    assert config.capped_month is None and config.max_per_month == 3


@pytest.mark.django_db
def test_the_billing_page_sets_the_limits_and_shows_when_a_cap_stopped_top_ups(
    client, org, fake_gateway
):
    owner = org.memberships.get().user
    client.force_login(owner)
    response = client.post(
        reverse("credits:billing_auto_top_up"),
        {
            "topup-enabled": "on",
            "topup-threshold_credits": "100",
            "topup-pack": "credits-500",
            "topup-monthly_cap_credits": "400",
            "topup-max_per_month": "",
        },
    )
    assert response.status_code == 303, response.content
    config = AutoTopUp.objects.get(organization=org)
    assert config.monthly_cap_credits == D(400) and config.max_per_month is None

    topup.balance_watch()  # 500 > 400: stopped before any charge
    assert not fake_gateway.params("payment_intent_off_session")
    page = client.get(reverse("credits:billing")).content.decode()
    assert 'data-testid="auto-top-up-capped"' in page
