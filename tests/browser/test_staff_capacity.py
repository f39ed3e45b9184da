"""End to end in a real browser: staff open the capacity plan from the staff nav, change the
weeks, see each pool's week chart (inline SVG), costs and replay, and apply the a100
recommendation as a schedule with a reason (a message, a new version); the page fits a phone.
Screenshots go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-capacity-*.png."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "pw-staff-12345"


def no_overflow(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, (width, inner)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_staff_apply_a_capacity_plan(live_server, browser_page, viewport):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations.demo import seed_world
    from infra_costs.models import ScheduleVersion

    seed_world(days=14, seed=3)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    page = browser_page
    page.set_viewport_size(viewport)
    base = live_server.url
    log_in(page, base, staff.email, PASSWORD)
    page.goto(f"{base}/staff/")
    nav = page.get_by_role("navigation", name="Staff")
    if viewport == PHONE and not nav.get_by_role("link", name="Capacity").is_visible():
        page.goto(f"{base}/staff/costs/capacity/")
    else:
        nav.get_by_role("link", name="Capacity").click()
    page.wait_for_url(f"{base}/staff/costs/capacity/")

    page.get_by_label("Weeks of history").fill("0")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#weeks-error")).to_be_visible()
    page.get_by_label("Weeks of history").fill("2")
    page.get_by_role("button", name="Show").click()

    section = page.locator("#pool-a100")
    expect(section.locator('svg[role="img"]')).to_be_visible()
    expect(section.locator("polyline")).to_have_count(2)  # current schedule + recommended
    expect(section.get_by_test_id("compare-a100")).to_contain_text("p95 wait")
    expect(page.locator("#pool-l4 svg")).to_be_visible()
    no_overflow(page)
    name = "desktop" if viewport == DESKTOP else "phone"
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-capacity-{name}.png", full_page=True)

    section.get_by_label("Why apply this schedule?").fill("Follow the measured demand")
    section.get_by_role("button", name="Apply as schedule").click()
    expect(page.locator(".alert-success")).to_contain_text("schedule version 1 is now in force")
    version = ScheduleVersion.objects.get(pool__slug="a100")
    assert version.created_by == staff and version.reason == "Follow the measured demand"
    expect(page.locator("#pool-a100")).to_contain_text("Follow the measured demand")
    no_overflow(page)
