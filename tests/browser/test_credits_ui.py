"""End to end in a real browser: the credits page (card, grants, usage chart) and the ledger
(filters through htmx, pagination, CSV download). Screenshots at phone and desktop widths go to
UI_SCREENSHOT_DIR (default /tmp) as ui-credits-*.png."""

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
    # live_server needs committed data (plans and packs: tests/browser/conftest.py).
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _seed_usage(account):
    """A month of activity: purchases and a promo, daily captured jobs, some released ones,
    an adjustment — enough for two ledger pages."""
    from credits import ledger

    now = timezone.now()
    ledger.grant_create(
        account=account,
        amount="2500",
        source="purchase",
        idempotency_key="pack-1",
        reference="credits-2500",
    )
    ledger.grant_create(
        account=account,
        amount="1000",
        source="promo",
        idempotency_key="promo-1",
        reference="WELCOME150",
        expires_at=now + timedelta(days=9),
    )
    n = 0
    for days_ago in range(27, -1, -1):
        day = now - timedelta(days=days_ago, hours=2)
        jobs = (days_ago * 7) % 5 + (3 if days_ago in (3, 4, 11) else 0)
        for j in range(jobs):
            n += 1
            at = day + timedelta(minutes=j * 7)
            price = "2.500" if j % 3 else "12.500"
            hold = ledger.hold_create(
                account=account,
                amount=price,
                key=f"job-{n:04d}",
                metadata={"model": "sdxl", "description": "sdxl 1024²"},
                now=at,
            )
            if j == 2:
                ledger.hold_release(hold=hold, reason="worker lost", now=at + timedelta(minutes=1))
            else:
                ledger.hold_capture(hold=hold, now=at + timedelta(minutes=1))
    ledger.adjust(
        account=account,
        amount="25",
        reason="Goodwill for the outage on the 3rd",
        idempotency_key="adj-1",
    )
    ledger.hold_create(account=account, amount="12.5", key="job-running")


def _login(page, base, user):
    log_in(page, base, user.email, "correct-horse-battery", landing=f"{base}/")


def test_credits_page_chart_ledger_and_csv(live_server, browser_page):
    from playwright.sync_api import expect

    from credits.models import LedgerEntry
    from credits.selectors import balance_summary
    from tests.factories import account_of, make_org

    org = make_org(name="Pixel Forge", slug="pixel-forge", plan="starter")
    _seed_usage(account_of(org))
    summary = balance_summary(organization=org)
    page = browser_page
    base = live_server.url
    _login(page, base, org.memberships.get().user)

    # The dashboard card, then the Credits page through the nav.
    expect(page.locator("#card-credits")).to_contain_text("available")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Credits").click()
    page.wait_for_url(f"{base}/credits/")
    available = page.get_by_test_id("credits-available")
    expect(available).to_have_text(f"{summary.available:,.3f}".rstrip("0").rstrip("."))
    chart = page.get_by_test_id("usage-chart")
    expect(chart).to_be_visible()
    assert (
        page.locator("svg[data-testid=usage-chart] > title")
        .text_content()
        .startswith("Credits spent per day")
    )
    assert page.locator("svg[data-testid=usage-chart] rect.chart-bar").count() >= 20
    expect(page.locator("#grants-table")).to_contain_text("never")
    expect(page.locator("#grants-table")).to_contain_text("WELCOME150")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-phone.png", full_page=True)
    page.locator(".chart-card").screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-phone-chart.png")
    page.locator("#card-credits").screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-phone-card.png")
    page.set_viewport_size(DESKTOP)

    # The ledger: newest first, 50 per page, htmx filters without a page load.
    page.get_by_role("link", name="Every movement in the ledger").click()
    page.wait_for_url(f"{base}/credits/ledger/")
    rows = page.locator("#ledger-table tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("(held)")  # the running job's hold is the newest
    page.evaluate("window.__marker = 1")
    page.get_by_label("Kind").select_option("release")
    expect(page.locator("#ledger-table tbody tr").first).to_contain_text("(released)")
    assert page.evaluate("window.__marker") == 1
    assert "kind=release" in page.url
    released = LedgerEntry.objects.filter(account__organization=org, kind="release").count()
    expect(page.locator("#ledger-table tbody tr")).to_have_count(released)
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#ledger-table tbody tr")).to_have_count(50)
    page.get_by_role("link", name="Older").click()
    expect(page.get_by_role("link", name="Newer")).to_be_visible()
    assert page.evaluate("window.__marker") == 1

    # An impossible date range: a message, no crash.
    page.get_by_label("From").fill("2030-05-02")
    page.get_by_label("To").fill("2030-05-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#ledger-problems")).to_be_visible()
    expect(page.locator("#ledger-panel")).to_contain_text("“To” is before “From”.")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#ledger-problems")).to_have_count(0)

    # CSV download: every entry, header first.
    with page.expect_download() as info:
        page.get_by_test_id("ledger-csv").click()
    download = info.value
    assert download.suggested_filename.startswith("credits-ledger-pixel-forge-")
    with open(download.path(), encoding="utf-8") as f:
        parsed = list(csv.reader(io.StringIO(f.read())))
    assert parsed[0][:3] == ["created_at", "sequence", "kind"]
    assert len(parsed) - 1 == LedgerEntry.objects.filter(account__organization=org).count()

    page.goto(f"{base}/credits/ledger/")
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-ledger-phone.png", full_page=True)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-ledger-phone-top.png")
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-ledger-desktop.png", full_page=True)
    page.goto(f"{base}/")
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-dashboard-phone.png", full_page=True)


def test_credits_page_in_overage_with_no_usage_history(live_server, browser_page):
    from playwright.sync_api import expect

    from credits import ledger
    from tests.factories import make_account

    account = make_account(plan="starter", credits=10, slug="deep-end")
    ledger.hold_create(account=account, amount="135.5", key="big-render")
    page = browser_page
    base = live_server.url
    _login(page, base, account.organization.memberships.get().user)

    page.goto(f"{base}/credits/")
    expect(page.get_by_test_id("credits-available")).to_have_text("−125.5")
    expect(page.get_by_test_id("credits-overage")).to_have_text("125.5 / 500")
    expect(page.get_by_test_id("usage-chart")).to_contain_text("No usage in these 30 days")
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-credits-overage-phone.png", full_page=True)
