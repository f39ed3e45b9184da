"""The staff landing page's alerts in a real browser, on a desktop (1280×800) and a phone
(390×844): the beat task opens alerts from real data, the page shows them with their severity,
long messages wrap without sideways scrolling, and the link leads to the admin's alert list.
Screenshots go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-alerts-*.png."""

from __future__ import annotations

import importlib
import os
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone

from tests.browser.conftest import _skip_reason, browser_page  # noqa: F401 - the fixture
from tests.browser.helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PASSWORD = "pw-alerts-12345"


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request, browser_page):  # noqa: F811
    browser_page.set_viewport_size(VIEWPORTS[request.param])
    return request.param


def test_staff_see_open_and_resolved_alerts(live_server, browser_page, viewport):  # noqa: F811
    from playwright.sync_api import expect

    from accounts.models import User
    from infra_costs.models import Node
    from operations.alerts import services
    from tests.factories import make_pool
    from tests.operations.test_alerts import queue

    importlib.import_module("operations.migrations.0002_default_alert_rules").create_rules(
        django_apps, None
    )
    staff = User.objects.create_superuser(email="ops@example.com", password=PASSWORD)
    pool = make_pool("a100")
    now = timezone.now()
    queue(pool, 34, enqueued_at=now)
    node = Node.objects.create(
        pool=pool, name="a100-simulated-node-with-a-long-name-2", provider="simulated"
    )
    Node.objects.filter(pk=node.pk).update(health="degraded")
    services.alerts_evaluate(now=now - timedelta(minutes=10))
    Node.objects.filter(pk=node.pk).update(health="ok")
    services.alerts_evaluate(now=now)  # the node's alert resolves, the queue's stays open

    page, base = browser_page, live_server.url
    log_in(page, base, staff.email, PASSWORD, landing=f"{base}/staff/")
    section = page.get_by_test_id("staff-rule-alerts")
    expect(section).to_be_visible()
    expect(section.get_by_test_id("open-alert-count")).to_have_text("1 open")
    expect(section.get_by_test_id("open-alerts")).to_contain_text("Pool a100: 34 jobs queued")
    expect(section.get_by_test_id("open-alerts")).to_contain_text("Critical")
    expect(section.get_by_test_id("resolved-alerts")).to_contain_text(
        "a100-simulated-node-with-a-long-name-2"
    )
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow}px wider than the viewport"
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-alerts-{viewport}.png", full_page=True)

    section.get_by_role("link", name="All alerts and rule thresholds in the admin").click()
    page.wait_for_url(f"{base}/admin/operations/alert/")
    expect(page.locator("#result_list")).to_contain_text("Pool a100: 34 jobs queued")
