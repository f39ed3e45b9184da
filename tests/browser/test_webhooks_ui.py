"""End to end in a real browser: an owner manages outbound webhooks at /webhooks/ — adds an
endpoint for a local receiver (the secret is shown once), sends a test event, sees it delivered
(signed with that secret, checked by the documented verifier), rotates the secret; on a desktop
and on a 390 px phone without horizontal scrolling. Screenshots go to UI_SCREENSHOT_DIR
(default /tmp) as ui-webhooks-*."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
PASSWORD = "pw-owner-12345"


def _no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, width


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_owner_adds_tests_and_rotates_a_webhook_endpoint(live_server, browser_page, size):
    from playwright.sync_api import expect

    from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
    from accounts.webhooks.services import webhook_delivery_attempt
    from accounts.webhooks.signing import HEADER, verify
    from tests.accounts.webhook_receiver import start_receiver
    from tests.factories import UserFactory, make_org

    receiver, server = start_receiver()
    owner = UserFactory(email="owner@example.com")
    owner.set_password(PASSWORD)
    owner.save()
    make_org(slug="acme", owner=owner)
    page = browser_page
    page.set_viewport_size(size)
    name = "phone" if size is PHONE else "desktop"
    try:
        log_in(page, live_server.url, owner.email, PASSWORD)
        page.goto(f"{live_server.url}/webhooks/")
        expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
        _no_horizontal_scroll(page)

        # Add an endpoint: the detail page shows the signing secret once.
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_label("Description").fill("Order pipeline")
        page.get_by_label("generation.succeeded", exact=False).check()
        page.get_by_role("button", name="Add endpoint").click()
        box = page.get_by_test_id("new-secret-box")
        expect(box).to_be_visible()
        secret = page.get_by_test_id("new-webhook-secret").inner_text().strip()
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.url == receiver.url and secret == endpoint.secret
        _no_horizontal_scroll(page)

        # Send a test event; deliver it (the worker's step) and see it delivered.
        page.get_by_role("button", name="Send a test event").click()
        expect(page.get_by_text("A test event is on its way.")).to_be_visible()
        expect(page.get_by_test_id("new-secret-box")).to_have_count(0)  # shown once
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        row = page.locator(f"#webhook-delivery-{delivery.pk}")
        expect(row).to_contain_text("webhook.test")
        expect(row).to_contain_text("pending")
        webhook_delivery_attempt(delivery_id=delivery.pk)
        assert len(receiver.requests) == 1
        received = receiver.requests[0]
        assert verify(received.body, received.headers[HEADER], secret)
        page.reload()
        expect(row).to_contain_text("delivered")
        expect(row).to_contain_text("HTTP 200")
        _no_horizontal_scroll(page)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-webhooks-delivered-{name}.png", full_page=True)

        # Rotate the secret: a new one is shown once; the old one keeps working for a while.
        page.get_by_role("button", name="Rotate secret").click()
        expect(page.get_by_text("The new signing secret")).to_be_visible()
        rotated = page.get_by_test_id("new-webhook-secret").inner_text().strip()
        endpoint.refresh_from_db()
        assert rotated == endpoint.secret != secret
        assert endpoint.previous_secret == secret
        _no_horizontal_scroll(page)
        page.screenshot(path=f"{SCREENSHOT_DIR}/ui-webhooks-rotated-{name}.png", full_page=True)

        # The list shows the endpoint, enabled.
        page.goto(f"{live_server.url}/webhooks/")
        listed = page.locator(f"#webhook-endpoint-{endpoint.pk}")
        expect(listed).to_contain_text(receiver.url)
        expect(listed).to_contain_text("enabled")
        _no_horizontal_scroll(page)
    finally:
        server.shutdown()
        server.server_close()
