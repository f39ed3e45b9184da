"""The generate page on a fair-use unlimited plan past its cap, in a real browser at desktop and
phone widths: no credit price anywhere on it, the fair-use count and the throttle notice shown,
and nothing wider than the screen (docs/planning.md, "Plan shapes")."""

from __future__ import annotations

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def test_unlimited_plan_generate_page_hides_prices_and_shows_the_throttle(
    live_server, browser_page
):
    from playwright.sync_api import expect

    from accounts.models import Plan
    from credits import services as credit_services
    from tests.factories import make_ai_model, make_org

    Plan.objects.filter(slug="unlimited").update(fair_use_cap=1)
    org = make_org(name="Big Studio", slug="big-studio", plan="unlimited")
    make_ai_model("sdxl", name="SDXL Turbo", credits="5")
    hold = credit_services.spend_authorize(organization=org, amount="5", key="earlier-job")
    credit_services.hold_capture(hold=hold)

    page = browser_page
    base = live_server.url
    log_in(
        page, base, org.memberships.get().user.email, "correct-horse-battery", landing=f"{base}/"
    )
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(f"{base}/generate/")
        expect(page.get_by_test_id("model-cards")).to_contain_text("SDXL Turbo")
        expect(page.get_by_test_id("model-price")).to_have_count(0)
        expect(page.get_by_test_id("credits-available")).to_have_count(0)
        expect(page.locator("#generate-button")).to_have_text("Generate")
        expect(page.get_by_test_id("fair-use")).to_contain_text("1 of 1 generations")
        expect(page.get_by_test_id("fair-use-throttled")).to_contain_text("lowest priority")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.evaluate("window.innerWidth")
