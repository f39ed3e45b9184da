"""End to end in a real browser: the staff unit-cost report with its charts and the pricing page
(apply a suggestion) on the demo world (`seed_world(days=14, seed=1)`, ~50% idle). Screenshots
at phone and desktop widths go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-*.png."""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.browser.helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
A4 = {"width": 794, "height": 1123}
PASSWORD = "pw-staff-12345"


def _login(page, base, email):
    log_in(page, base, email, PASSWORD)


def test_staff_cost_report_and_pricing(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations import selectors, services
    from generations.demo import seed_world
    from generations.models import AIModel
    from infra_costs.allocation import unit_cost_report
    from tests.factories import make_org

    seed_world(days=14, seed=1)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    make_org(slug="ops", owner=staff)
    end = timezone.now().date()
    start = end - timedelta(days=14)
    report = unit_cost_report(start, end)
    page = browser_page
    base = live_server.url
    _login(page, base, staff.email)

    # Through the main nav.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Costs").click()
    page.wait_for_url(f"{base}/staff/costs/")
    page.goto(f"{base}/staff/costs/?start={start}&end={end}")
    infra = page.locator('[data-total="infra_cost_usd"]')
    expect(infra).to_have_text(f"${float(report['totals']['infra_cost_usd']):,.2f}")
    expect(page.locator('[data-total="generations"]')).to_have_text(
        str(report["totals"]["generations"])
    )
    for kind, count in (
        ("cost-per-generation", 1),
        ("idle-fraction", 1),
        ("daily", 2),
        ("heatmap", 2),
    ):
        expect(page.locator(f'figure[data-chart="{kind}"] svg.chart-svg')).to_have_count(count)
    expect(page.locator('figure[data-chart="cost-per-generation"] rect.bar-fully')).to_have_count(
        len([m for m in report["models"] if m["generations"]])
    )
    assert page.locator('figure[data-chart="heatmap"] .heat-cells rect').count() == 2 * 14 * 24
    # Charts fit their card: no horizontal scrolling at any width.
    for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], (name, width)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-costs-{name}.png", full_page=True)
        page.locator('figure[data-chart="heatmap"]').first.screenshot(
            path=f"{SCREENSHOT_DIR}/ui-staff-heatmap-{name}.png"
        )
        page.locator('figure[data-chart="daily"]').first.screenshot(
            path=f"{SCREENSHOT_DIR}/ui-staff-daily-{name}.png"
        )
        page.locator('figure[data-chart="cost-per-generation"]').screenshot(
            path=f"{SCREENSHOT_DIR}/ui-staff-cpg-{name}.png"
        )
    page.set_viewport_size(A4)  # print: an A4 page's width at 96 dpi
    page.emulate_media(media="print")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-costs-print.png", full_page=True)
    page.emulate_media(media="screen")
    page.set_viewport_size(DESKTOP)

    # CSV download of the models table: the report's rows.
    with page.expect_download() as info:
        page.get_by_role("button", name="Models CSV").click()
    with open(info.value.path(), encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert [r["model"] for r in rows] == [m["model"] for m in report["models"]]
    assert [r["cost_per_generation_usd"] for r in rows] == [
        m["cost_per_generation_usd"] or "" for m in report["models"]
    ]

    # Pricing: a model priced far below cost is flagged; apply its suggestion.
    video = AIModel.objects.get(slug="wan-video")  # ~$0.4 per generation
    services.rate_set(model=video, credits="1", reason="launch promo", actor=None)
    page.goto(f"{base}/staff/pricing/?start={start}&end={end}")
    row = page.locator("#model-wan-video")
    expect(row.locator('[data-flag="below-cost"]')).to_be_visible()
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-pricing-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-pricing-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    row.locator("summary").click()
    expect(row.locator("textarea[name=reason]")).not_to_have_value("")
    row.get_by_role("button", name="Set wan-video to").click()
    expect(page.locator(".alert-success")).to_contain_text("wan-video now costs")
    rate = selectors.rate_current(model=video)
    assert rate.set_by == staff and rate.credits > 1
    expect(page.locator("#model-wan-video [data-flag='below-cost']")).to_have_count(0)
