"""End to end in a real browser: staff reach /staff/exports/ from the staff nav, pick a
period and download a dataset as Parquet (typed columns, the seeded jobs); the page fits a
390 px phone. Screenshots go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-exports-*."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PASSWORD = "pw-staff-12345"


def test_staff_download_an_export_from_the_exports_page(live_server, browser_page):
    import pyarrow.parquet as pq
    from playwright.sync_api import expect

    from tests.factories import UserFactory
    from tests.operations.analytics_scenario import seed

    seed()
    staff = UserFactory(email="staff@example.com", is_staff=True)
    staff.set_password(PASSWORD)
    staff.save()
    page = browser_page
    log_in(page, live_server.url, staff.email, PASSWORD)
    page.goto(f"{live_server.url}/staff/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Exports").click()
    expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()
    page.get_by_label("Start").fill("2026-01-05")
    page.get_by_label("End (exclusive)").fill("2026-01-08")
    page.get_by_role("button", name="Show").click()
    row = page.locator('tr[data-dataset="usage"]')
    with page.expect_download() as download:
        row.get_by_role("link", name="PARQUET").click()
    assert download.value.suggested_filename == "usage_2026-01-05_2026-01-08.parquet"
    table = pq.read_table(download.value.path())
    assert sum(table.column("jobs").to_pylist()) == 6
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-exports-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 391
    expect(row.get_by_role("link", name="CSV")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-exports-phone.png", full_page=True)
