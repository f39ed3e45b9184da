"""The billing page's free trial in a real browser: an owner on the free plan starts a trial,
sees its status ("Trial of Studio until …, 500 credits left"), ends it at once and is back on
the free plan."""

from __future__ import annotations

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_starts_a_trial_sees_it_and_ends_it(live_server, browser_page):
    from decimal import Decimal

    from playwright.sync_api import expect

    from accounts.models import Plan, Subscription
    from credits.trials.models import OrganizationTrial, PlanTrial
    from tests.factories import make_org

    org = make_org(name="Acme Studio", slug="acme", plan="free")
    PlanTrial.objects.create(plan=Plan.objects.get(slug="studio"), days=14, credits=Decimal(500))
    owner = org.memberships.get().user

    page = browser_page
    base = live_server.url
    log_in(page, base, owner.email, "correct-horse-battery", landing=f"{base}/")
    page.goto(f"{base}/credits/billing/")

    page.get_by_role("button", name="Start a free 14-day trial of Studio").click()
    expect(page.get_by_text("Your free trial of Studio has started")).to_be_visible()
    status = page.get_by_test_id("trial-status")
    expect(status).to_contain_text("Trial of Studio until")
    expect(status).to_contain_text("500 credits left")
    expect(page.get_by_test_id("trial-subscribe")).to_be_visible()
    expect(page.get_by_test_id("billing-status")).to_have_text("Trial")

    page.get_by_test_id("trial-end").click()
    expect(page.get_by_text("Your free trial of Studio has ended")).to_be_visible()
    expect(page.get_by_test_id("trial-status")).to_contain_text("ended on")
    expect(page.get_by_test_id("trial-end")).to_have_count(0)

    assert Subscription.objects.get(organization=org).plan.slug == "free"
    assert OrganizationTrial.objects.get(organization=org).ended_at is not None
