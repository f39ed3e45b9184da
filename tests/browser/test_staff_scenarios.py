"""End to end in a real browser: the scenario planner on the demo world (`seed_world(days=3)`,
measured costs): evaluate the default inputs, save two scenarios, compare them side by side
with the SVG chart; desktop and a 390 px phone, no horizontal overflow. Screenshots go to
UI_SCREENSHOT_DIR (default /tmp) as ui-staff-scenarios-*.png."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "pw-staff-12345"


def _no_overflow(page, name: str) -> None:
    for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate("window.innerWidth")
        assert width <= inner, (name, label, width, inner)
        page.screenshot(
            path=f"{SCREENSHOT_DIR}/ui-staff-scenarios-{name}-{label}.png", full_page=True
        )
    page.set_viewport_size(DESKTOP)


def test_scenario_planner_evaluate_save_compare(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations.demo import seed_world
    from planning.models import Scenario
    from tests.factories import make_org

    seed_world(days=3, seed=1)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    make_org(slug="ops", owner=staff)
    page = browser_page
    base = live_server.url
    log_in(page, base, staff.email, PASSWORD)

    page.goto(f"{base}/staff/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Scenarios").click()
    page.wait_for_url(f"{base}/staff/planning/scenarios/")
    _no_overflow(page, "empty")

    page.get_by_label("Monthly active users").fill("20000")
    page.get_by_role("button", name="Evaluate").click()
    results = page.get_by_test_id("results")
    expect(results).to_be_visible()
    expect(page.locator('[data-total="total_cost_usd"]')).to_contain_text("$")
    expect(page.locator('figure[data-chart="cost-revenue"] svg.chart-svg')).to_have_count(1)
    expect(page.locator("#sensitivity-table tbody tr")).to_have_count(7)
    _no_overflow(page, "results")

    # A bad input: a form error, nothing saved.
    page.get_by_label("Conversion to paid (%)").fill("-3")
    page.get_by_label("Name").fill("Broken")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.locator(".field-error")).to_contain_text("negative")
    assert Scenario.objects.count() == 0

    page.get_by_label("Conversion to paid (%)").fill("5")
    page.get_by_label("Name").fill("Launch")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.locator(".alert-success")).to_contain_text("Launch")
    expect(page.get_by_test_id("scenario-name")).to_have_text("Launch")
    page.get_by_label("Monthly active users").fill("80000")
    page.get_by_label("Name").fill("Growth")
    page.get_by_role("button", name="Save scenario").click()
    expect(page.locator(".alert-success")).to_contain_text("Growth")
    assert list(Scenario.objects.order_by("pk").values_list("name", "inputs__mau")) == [
        ("Launch", 20000),
        ("Growth", 80000),
    ]

    page.get_by_label("Compare Launch").check()
    page.get_by_label("Compare Growth").check()
    page.get_by_role("button", name="Compare").click()
    page.wait_for_url("**/staff/planning/scenarios/compare/**")
    expect(page.locator("#compare-table thead th[data-scenario]")).to_have_count(2)
    chart = page.locator('figure[data-chart="cost-revenue"]')
    expect(chart.locator("rect.bar-scenario-cost")).to_have_count(2)
    expect(chart.locator("rect.bar-scenario-revenue")).to_have_count(2)
    # No external asset: every image is inline SVG.
    assert page.locator("img, object, iframe").count() == 0
    _no_overflow(page, "compare")
