"""The budgets page in a real browser: an owner creates a team, adds a member, sets a team
budget, sees the use after a job, changes the limit; a refused generation on the generate page
names the budget and links to the page; the page fits a phone's width."""

from __future__ import annotations

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def test_an_owner_sets_a_team_budget_and_a_refusal_names_it(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import Plan
    from credits import services as credit_services
    from tests.factories import make_ai_model, make_org

    org = make_org(name="Acme Studio", slug="acme", plan="studio")
    Plan.objects.filter(slug="studio").update(max_concurrent_jobs=None)
    credit_services.organization_grant(
        organization=org, amount="1000", source="adjustment", reason="t", idempotency_key="g"
    )
    make_ai_model("sdxl", name="SDXL Turbo", credits="5")
    owner = org.memberships.get().user

    page = browser_page
    base = live_server.url
    log_in(page, base, owner.email, "correct-horse-battery", landing=f"{base}/")
    page.goto(f"{base}/credits/budgets/")
    expect(page.locator("#no-budgets")).to_be_visible()

    page.get_by_label("Team name").fill("Design")
    page.get_by_role("button", name="Add team").click()
    expect(page.locator("#team-design")).to_contain_text("Design")
    page.get_by_label("Add to team").select_option(label="Design")
    page.get_by_label("Member", exact=True).select_option(label=owner.email)
    page.get_by_role("button", name="Add to team").click()
    expect(page.locator("#team-design")).to_contain_text(owner.email)

    add = page.locator(".budget-form")
    add.get_by_label("Budget for").select_option(label="Design")
    add.get_by_label("Period").select_option("day")
    add.get_by_label("Limit (credits)").fill("5")
    page.get_by_role("button", name="Add budget").click()
    row = page.locator('[data-limit="budget:team:design"]')
    expect(row).to_contain_text("The team “Design” budget")
    expect(row.get_by_test_id("budget-use")).to_contain_text("of 5")

    # One job fits; the second is refused on the generate page, naming the budget.
    page.goto(f"{base}/generate/")
    page.get_by_label("Prompt").fill("a lighthouse")
    page.locator("#generate-button").click()
    expect(page.locator("#job-panel")).to_be_visible()
    page.goto(f"{base}/generate/")
    page.get_by_label("Prompt").fill("another lighthouse")
    page.locator("#generate-button").click()
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("Budget reached")
    expect(refusal).to_contain_text("The team “Design” budget of 5 credits a day is used up")
    refusal.get_by_role("link", name="See budgets").click()
    expect(row.get_by_test_id("budget-use")).to_contain_text("held of 5")

    # Raise the limit.
    edit = page.locator(".budget-edit-form")
    edit.get_by_label("Budget", exact=True).select_option(label="The team “Design” budget")
    edit.get_by_label("Limit (credits)").fill("50")
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_text("is updated")).to_be_visible()
    expect(row.get_by_test_id("budget-use")).to_contain_text("of 50")

    page.set_viewport_size(PHONE)
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')]"
        ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
        ".slice(0, 20).map(e => e.tagName + '.' + e.className)"
    )
    assert width <= page.evaluate("window.innerWidth"), " ".join(wide)
