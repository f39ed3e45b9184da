"""End to end in a real browser: the billing page with invoices loaded by htmx, buying a credit
pack (Stripe Checkout is the fake gateway's URL, answered by the browser's route handler) and
the settings form. Screenshots at phone and desktop widths go to UI_SCREENSHOT_DIR (default
/tmp) as ui-billing-e2e-*.png."""

from __future__ import annotations

import os
import re

import pytest
from django.db import transaction

from accounts.models import Plan
from credits.billing.models import AutoTopUp, Purchase, StripeCustomer
from credits.billing.subscriptions import activate
from tests.billing.conftest import (  # noqa: F401 (fixtures)
    PRICES,
    _stripe_settings,
    catalog,
    fake_gateway,
)
from tests.browser.helpers import log_in
from tests.factories import UserFactory, make_org

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _login(page, base, user):
    log_in(page, base, user.email, "correct-horse-battery", landing=f"{base}/")


@pytest.fixture
def subscribed(catalog, fake_gateway):  # noqa: F811
    owner = UserFactory(email="owner@billing.test")
    org = make_org(slug="acme", name="Acme Studio", plan="free", owner=owner)
    StripeCustomer.objects.create(organization=org, stripe_customer_id="cus_acme")
    with transaction.atomic():  # as in the webhook handler
        activate(
            organization=org,
            plan=Plan.objects.get(slug="starter"),
            customer_id="cus_acme",
            subscription_id="sub_acme",
            period_start=org.subscription.current_period_start,
            via="test",
        )
    fake_gateway.subscriptions["sub_acme"] = fake_gateway._subscription(
        "sub_acme", PRICES["starter"], "cus_acme"
    )
    for n, (status, amount) in enumerate([("paid", 900), ("paid", 900), ("open", 1250)], 1):
        fake_gateway.invoices[f"in_{n}"] = {
            "id": f"in_{n}",
            "customer": "cus_acme",
            "number": f"ACME-000{n}",
            "status": status,
            "amount_due": amount,
            "amount_paid": amount if status == "paid" else 0,
            "created": 1764547200 + n * 30 * 86400,
            "description": "Overage Oct 2026" if status == "open" else None,
            "lines": {"data": [{"description": "1 × GPU Credits Starter plan"}]},
            "hosted_invoice_url": f"https://invoice.stripe.test/i/{n}",
            "invoice_pdf": f"https://invoice.stripe.test/i/{n}.pdf",
        }
    return org, owner


def test_billing_page_invoices_and_buying_a_pack(live_server, browser_page, subscribed):
    org, owner = subscribed
    page = browser_page
    base = live_server.url
    page.route(
        re.compile(r"https://checkout\.stripe\.test/.*"),
        lambda route: route.fulfill(status=200, body="<h1>Fake Stripe Checkout</h1>"),
    )
    _login(page, base, owner)

    page.goto(f"{base}/credits/billing/")
    # htmx loads the invoices from the (fake) Stripe.
    page.locator("#invoices-table").wait_for()
    assert page.locator("#invoices-table tbody tr").count() == 3
    assert "ACME-0003" in page.locator("#invoices-table").inner_text()
    assert page.get_by_test_id("billing-plan-name").inner_text() == "Starter"
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-billing-e2e-{name}.png", full_page=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], f"horizontal scroll at {name}: {width}px"

    # Settings: a bad threshold is refused next to the field, a good one saved.
    page.set_viewport_size(DESKTOP)
    page.get_by_label("When available credits fall below").first.fill("-3")
    page.get_by_role("button", name="Save auto top-up").click()
    assert page.locator("#id_topup-threshold_credits_error").inner_text() == "Must be zero or more."
    assert not AutoTopUp.objects.exists()
    page.get_by_label("Buy credits automatically").check()
    page.get_by_label("When available credits fall below").first.fill("150")
    page.get_by_role("button", name="Save auto top-up").click()
    page.get_by_text("Auto top-up settings saved.").wait_for()
    assert AutoTopUp.objects.get(organization=org).threshold_credits == 150

    # Buying a pack goes to Stripe Checkout (a 303 to the session URL).
    page.get_by_role("button", name="Buy 2,500 credits").click()
    page.wait_for_url(re.compile(r"https://checkout\.stripe\.test/pay/.*"))
    purchase = Purchase.objects.get(organization=org)
    assert page.url.endswith(purchase.stripe_checkout_session_id)
    assert purchase.status == "pending"
