"""End to end in a real browser: staff open the fleet page from the staff nav, see the nodes by
state, stop a hot node (a message, the node stopping, a decision row by them), the page body
refreshes itself (htmx) when the node reaches warm, and the layout fits a phone. Screenshots at
phone and desktop widths go to UI_SCREENSHOT_DIR (default /tmp) as ui-staff-fleet-*.png."""

from __future__ import annotations

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
PASSWORD = "pw-staff-12345"


def test_staff_stop_a_hot_node_from_the_fleet_page(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import User
    from infra_costs import fleet
    from infra_costs.models import AutoscalePolicy, Node, NodeState, ScalingDecision
    from tests.factories import make_pool

    pool = make_pool("a100")
    AutoscalePolicy.objects.create(
        pool=pool,
        provider_config={"rent_delay_s": [600, 600], "model_load_s": 0, "stop_delay_s": 0},
    )
    t = timezone.now() - timedelta(hours=1)
    primary = fleet.node_rent(pool=pool, now=t, primary=True)
    hot = fleet.node_rent(pool=pool, now=t)
    standby = fleet.node_rent(pool=pool, now=t)
    fleet.fleet_advance(now=t + timedelta(minutes=10))
    assert fleet.node_stop(node=standby, now=t + timedelta(minutes=11))
    fleet.fleet_advance(now=t + timedelta(minutes=11))
    renting = fleet.node_rent(pool=pool, now=timezone.now())
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)

    page = browser_page
    base = live_server.url
    log_in(page, base, staff.email, PASSWORD)
    page.goto(f"{base}/staff/")
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Fleet").click()
    page.wait_for_url(f"{base}/staff/fleet/")

    section = page.locator("#pool-a100")
    for node, group in ((primary, "hot"), (hot, "hot"), (standby, "warm"), (renting, "cold")):
        expect(section.locator(f'[data-group="{group}"] #node-{node.name}')).to_be_visible()
    expect(page.locator(f"#node-{primary.name}")).to_contain_text("primary")
    expect(page.locator(f"#node-{renting.name}")).to_contain_text("renting")
    expect(
        page.locator(f"#node-{standby.name}").get_by_role("button", name="Resume")
    ).to_be_visible()
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-fleet-desktop.png", full_page=True)

    page.locator(f"#node-{hot.name}").get_by_role("button", name="Stop").click()
    expect(page.locator(".alert-success")).to_contain_text(f"Stopping {hot.name} to warm.")
    node = page.locator(f"#node-{hot.name}")
    expect(node).to_have_attribute("data-transition", "stopping")
    expect(node).to_contain_text("stopping")
    expect(node.get_by_role("button")).to_have_count(0)
    row = section.locator('tr[data-action="stop"]').first
    expect(row).to_contain_text(hot.name)
    expect(row).to_contain_text(staff.email)
    expect(row.locator(".badge-ok")).to_have_text("ok")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-fleet-stopping-desktop.png", full_page=True)
    decision = ScalingDecision.objects.get(action="stop")
    assert (decision.node_id, decision.decided_by_id, decision.ok) == (hot.pk, staff.pk, True)

    # The provider finishes; the page body refreshes itself (every 10 s) and shows it warm.
    fleet.fleet_advance(now=timezone.now(), pool_ids=[pool.pk])
    assert Node.objects.get(pk=hot.pk).state == NodeState.WARM
    expect(section.locator(f'[data-group="warm"] #node-{hot.name}')).to_be_visible(timeout=20_000)

    # A phone: nothing scrolls sideways.
    page.set_viewport_size(PHONE)
    page.reload()
    expect(section).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, (width, inner)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-fleet-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)
