"""End to end in a real browser: the staff pool economics page (/staff/planning/pools/) on the
demo world — reached from the staff nav, both tables and SVG charts, a demand and owning inputs
submitted through the form, a bad input shown as a form error; desktop and a 390 px phone with
no horizontal overflow. Screenshots go to UI_SCREENSHOT_DIR (default /tmp)."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "pw-staff-12345"


def test_pool_economics_page(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations.demo import seed_world
    from tests.factories import make_org

    seed_world(days=14, seed=1)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    make_org(slug="ops", owner=staff)
    page = browser_page
    base = live_server.url
    log_in(page, base, staff.email, PASSWORD)

    page.goto(f"{base}/staff/costs/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Pool economics").click()
    page.wait_for_url(f"{base}/staff/planning/pools/")
    expect(page.get_by_role("heading", name="Pool economics", level=1)).to_be_visible()
    expect(page.locator("#pools-summary tbody tr")).to_have_count(2)
    expect(page.locator("#utilization-table tbody tr")).to_have_count(6)
    for kind in ("cost-curve", "rent-buy"):
        expect(page.locator(f'figure[data-chart="{kind}"] svg.chart-svg')).to_have_count(1)
    expect(page.locator('figure[data-chart="cost-curve"] polyline')).to_have_count(3)
    expect(page.locator('figure[data-chart="rent-buy"] polyline')).to_have_count(2)
    for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.evaluate("window.innerWidth"), (name, width)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-pools-{name}.png", full_page=True)
    page.set_viewport_size(DESKTOP)

    # Another pool, a demand and owning inputs through the form.
    page.get_by_label("Pool", exact=True).select_option("l4")
    page.get_by_label("Demand (gen./hour)").fill("5000")
    page.get_by_label("Nodes to own").fill("1")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#util-h")).to_contain_text("l4")
    expect(page.locator("#second-node")).to_contain_text("your input")
    expect(page.locator("#rent-buy")).to_contain_text("Capex (1 node)")

    # A bad input: a form error next to the field, no server error.
    page.get_by_label("Depreciation (months)").fill("-4")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#depreciation_months-error")).to_be_visible()
    expect(page.locator('figure[data-chart="rent-buy"]')).to_have_count(0)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
