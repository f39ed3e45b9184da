"""The contracts pages in a real browser: staff set a contract and a price override on
/staff/contracts/ and see them listed; the organization's owner sees the contract terms and
the plan comparison table (entitlements) on the billing page."""

from __future__ import annotations

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_set_a_contract_and_the_owner_sees_its_terms_and_entitlements(
    live_server, browser_page
):
    from playwright.sync_api import expect

    from accounts.models import Plan, User
    from tests.factories import make_ai_model, make_org

    org = make_org(name="Acme Studio", slug="acme", plan="enterprise")
    Plan.objects.filter(slug="starter").update(max_batch_size=2)
    make_ai_model("sdxl", name="SDXL Turbo", credits="5")
    owner = org.memberships.get().user
    User.objects.create_user(
        email="am@example.com", password="correct-horse-battery", is_staff=True
    )

    page = browser_page
    base = live_server.url
    log_in(page, base, "am@example.com", "correct-horse-battery")
    page.goto(f"{base}/staff/contracts/")
    expect(page.get_by_role("heading", name="Contracts", exact=True)).to_be_visible()

    form = page.locator("#contract-form")
    form.get_by_label("Organization").fill("acme")
    form.get_by_label("Credits per period").fill("12000")
    form.get_by_label("Overage cap").fill("3000")
    form.get_by_label("Overage price usd").fill("0.0035")
    form.get_by_label("Notes").fill("Net 30 invoicing")
    form.get_by_label("Reason").fill("Signed the 2026 MSA")
    form.get_by_role("button", name="Save contract version").click()
    row = page.locator("#org-acme")
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text("12,000")

    override = page.locator("#override-form")
    override.get_by_label("Organization").fill("acme")
    override.get_by_label("Model").fill("sdxl")
    override.get_by_label("Discount percent").fill("15")
    override.get_by_label("Reason").fill("Volume discount")
    override.get_by_role("button", name="Save price override").click()
    expect(page.locator("#org-acme")).to_contain_text("15% off")

    # The owner's billing page: the contract read-only, and what each plan includes.
    page.context.clear_cookies()
    log_in(page, base, owner.email, "correct-horse-battery")
    page.goto(f"{base}/credits/billing/")
    terms = page.get_by_test_id("contract-terms")
    expect(terms).to_contain_text("In force")
    expect(terms).to_contain_text("12,000")
    expect(terms).to_contain_text("Net 30 invoicing")
    expect(terms.locator("input")).to_have_count(0)  # read-only
    table = page.get_by_test_id("entitlements-table")
    expect(table).to_be_visible()
    expect(table.locator('[data-entitlement="max_batch_size"]')).to_contain_text("2 images")
    expect(table.locator('[data-entitlement="models"]')).to_contain_text("All models")
