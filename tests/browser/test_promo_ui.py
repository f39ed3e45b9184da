"""The billing page's "Redeem a code" form in a real browser: an owner redeems a code (any
case) and sees the credits added; the same code again and a wrong code say so without granting
anything more."""

from __future__ import annotations

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_redeems_a_promo_code_once_on_the_billing_page(live_server, browser_page):
    from decimal import Decimal

    from playwright.sync_api import expect

    from credits.models import CreditGrant
    from credits.promos.models import PromoCode
    from tests.factories import make_org

    org = make_org(name="Acme Studio", slug="acme", plan="studio")
    PromoCode.objects.create(code="LAUNCH500", credits=Decimal(500), grant_days=30)
    owner = org.memberships.get().user

    page = browser_page
    base = live_server.url
    log_in(page, base, owner.email, "correct-horse-battery", landing=f"{base}/")
    page.goto(f"{base}/credits/billing/")

    form = page.get_by_test_id("promo-form")
    form.get_by_label("Code").fill("launch500")
    form.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text("Code redeemed: 500 credits added")).to_be_visible()

    form.get_by_label("Code").fill("LAUNCH500")
    form.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text("already redeemed")).to_be_visible()

    form.get_by_label("Code").fill("NOPE")
    form.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text("This code is not valid.")).to_be_visible()

    assert CreditGrant.objects.filter(account__organization=org, source="promo").count() == 1
