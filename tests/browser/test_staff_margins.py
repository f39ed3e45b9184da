"""End to end in a real browser: the staff margins page (/staff/planning/margins/) on the demo
world plus two customers with jobs on its pools — reached from the staff nav, tables least
profitable first with signed margins, a CSV download, desktop and a 390 px phone without
horizontal scrolling. Screenshots go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-margins-*."""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "pw-staff-12345"


def _customer_jobs(org, model, node, day, n: int, *, capture: bool) -> None:
    import uuid

    from credits.services import hold_capture, spend_authorize
    from generations.models import Job
    from generations.selectors import rate_current
    from infra_costs.models import GpuRun

    for k in range(n):
        start = day + timedelta(hours=9, minutes=7 * k)
        end = start + timedelta(seconds=90)
        job = Job.objects.create(
            organization=org,
            model=model,
            params={},
            params_hash="x",
            status="succeeded",
            attempts=1,
            created_at=start,
            started_at=start,
            finished_at=end,
        )
        GpuRun.objects.create(
            external_id=str(job.pk),
            model_slug=model.slug,
            pool=node.pool,
            node=node,
            started_at=start,
            finished_at=end,
            status="succeeded",
            source="live",
        )
        if capture:
            rate = rate_current(model=model, now=start)
            hold = spend_authorize(
                organization=org, amount=rate.credits, key=f"job:{uuid.uuid4()}", now=start
            )
            hold_capture(hold=hold, now=end)


def test_staff_margins_page(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations.demo import seed_world
    from generations.models import AIModel
    from infra_costs.models import Node
    from planning.margins import margins_report
    from tests.factories import make_org

    seed_world(days=7, seed=1)
    end = timezone.now().date()
    start = end - timedelta(days=7)
    day = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    acme = make_org(slug="acme", plan="starter")
    bolt = make_org(slug="bolt", plan="studio")
    flux = AIModel.objects.get(slug="flux-dev")
    sdxl = AIModel.objects.get(slug="sdxl")
    _customer_jobs(acme, flux, Node.objects.get(name="a100-node-1"), day, 6, capture=True)
    _customer_jobs(bolt, sdxl, Node.objects.get(name="l4-node-1"), day, 4, capture=False)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    report = margins_report(start, end)

    page = browser_page
    base = live_server.url
    log_in(page, base, staff.email, PASSWORD)
    page.goto(f"{base}/staff/costs/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Margins").click()
    page.wait_for_url(f"{base}/staff/planning/margins/")
    page.goto(f"{base}/staff/planning/margins/?start={start}&end={end}")

    rows = page.locator("#orgs-table tbody tr")
    expect(rows).to_have_count(len(report.organizations))
    assert [rows.nth(i).get_attribute("data-org") for i in range(rows.count())] == [
        r.key for r in report.organizations
    ]
    # The studio customer pays $99/month and ran a few jobs; acme's credits do not cover its GPU.
    for cell in page.locator("#orgs-table [data-margin-pct]").all_inner_texts():
        assert cell.strip()[0] in "+\u2212±—", cell
    expect(page.locator("#plans-table tbody tr")).to_have_count(len(report.plans))
    expect(page.locator("#models-table tbody tr")).to_have_count(len(report.models))
    expect(page.get_by_test_id("reconcile")).to_contain_text("infrastructure cost")

    href = page.get_by_role("button", name="Organizations CSV").get_attribute("href")
    response = page.request.get(f"{base}{href}")
    assert response.ok
    got = list(csv.DictReader(io.StringIO(response.text())))
    assert [r["organization"] for r in got] == [r.key for r in report.organizations]
    assert sum(Decimal(r["gpu_cost_usd"]) for r in got) > 0

    for size, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= page.evaluate("window.innerWidth"), (name, width)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-margins-{name}.png", full_page=True)

    # A bad period is a form error on the page, not a crash.
    page.goto(f"{base}/staff/planning/margins/?start={end}&end={start}")
    expect(page.locator(".field-error")).to_be_visible()
