"""End to end in a real browser: sign up, create an API key, use it, revoke it."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

import pytest
from django.core import mail

pytestmark = [
    pytest.mark.browser,
    # live_server needs committed data (plans and packs: tests/browser/conftest.py).
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")


def _get_schema(base_url: str, key: str) -> tuple[int, dict | None]:
    request = urllib.request.Request(
        f"{base_url}/api/schema/",
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, None
    except urllib.error.HTTPError as error:
        body = error.read().decode()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"raw": body}


def _phone_screenshot(page, name: str) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=f"{SCREENSHOT_DIR}/{name}", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def test_signup_create_use_and_revoke_an_api_key(live_server, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    base = live_server.url
    # The Content-Security-Policy blocks nothing on the way (Chromium logs each violation).
    csp_violations = []
    page.on(
        "console",
        lambda msg: (
            csp_violations.append(msg.text) if "Content Security Policy" in msg.text else None
        ),
    )

    # Sign up: "check your email", then the emailed link asks for a password and lands on the
    # dashboard of a new organization on the free plan.
    page.goto(f"{base}/signup/")
    _phone_screenshot(page, "ui-signup-phone.png")
    page.get_by_label("Email").fill("pat@example.com")
    page.get_by_label("Your name").fill("Pat Doe")
    page.get_by_label("Organization name").fill("Pat's Pixels")
    page.get_by_role("main").get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{base}/signup/sent/")
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    [message] = mail.outbox
    link = re.search(r"https?://[^/\s]+(/signup/confirm/\S+/)", message.body).group(1)
    page.goto(f"{base}{link}")
    page.get_by_label("Password", exact=True).fill("a-long-unusual-passphrase-42")
    page.get_by_label("Password (again)").fill("a-long-unusual-passphrase-42")
    page.get_by_role("main").get_by_role("button", name="Create account").click()
    page.wait_for_url(f"{base}/")
    expect(page.get_by_role("heading", name="Pat's Pixels")).to_be_visible()
    expect(page.locator("#card-credits")).to_be_visible()
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-dashboard.png", full_page=True)

    # Create a key named "ci"; the page shows it once.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
    page.wait_for_url(f"{base}/api-keys/")
    expect(page.locator("#no-api-access")).to_be_visible()  # free plan
    page.get_by_label("Name").fill("ci")
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_test_id("new-api-key")
    expect(shown).to_be_visible()
    raw_key = shown.inner_text().strip()
    assert raw_key.startswith("gpuc_")

    _phone_screenshot(page, "ui-apikeys-phone.png")

    # The key authenticates; a bogus one does not.
    assert _get_schema(base, raw_key)[0] == 200
    status, body = _get_schema(base, "gpuc_00000000_not-a-real-key")
    assert status == 401
    assert body["code"] == "authentication_failed"

    # Reloading never shows the key again.
    page.goto(f"{base}/api-keys/")
    assert raw_key not in page.content()

    # Revoke in the browser (confirm dialog accepted); the key stops working.
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator("tr", has_text="ci")
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#api-keys-table tr", has_text="ci")).to_contain_text("revoked")
    expect(page.locator("#messages")).to_contain_text("Revoked the key")
    status, body = _get_schema(base, raw_key)
    assert status == 401
    assert body["code"] == "authentication_failed"
    assert csp_violations == []


def test_owner_manages_members_inline_and_switches_organization(live_server, browser_page):
    from playwright.sync_api import expect

    from accounts.models import Membership
    from tests.factories import make_org

    org = make_org(name="Inline Co", plan="starter")
    owner = org.memberships.get().user
    make_org(name="Second Co", plan="free", owner=owner)
    page = browser_page
    base = live_server.url

    page.goto(f"{base}/login/")
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("main").get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}/members/")
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Role").select_option("admin")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#messages")).to_contain_text("invitation")
    expect(page.locator("#members-table")).to_contain_text("sam@example.com")

    # The role <select> submits itself through htmx: the table is swapped, no page load.
    page.evaluate("window.__marker = 1")
    page.get_by_label("Role of sam@example.com").select_option("member")
    expect(page.locator("#messages")).to_contain_text("sam@example.com is now a member")
    assert page.evaluate("window.__marker") == 1
    assert Membership.objects.get(organization=org, user__email="sam@example.com").role == "member"
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-members-desktop.png", full_page=True)
    _phone_screenshot(page, "ui-members-phone.png")

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="sam@example.com").get_by_role("button", name="Remove").click()
    expect(page.locator("#members-table")).not_to_contain_text("sam@example.com")
    assert not Membership.objects.filter(organization=org, user__email="sam@example.com").exists()

    # The organization switcher (the owner is in two organizations) submits on change.
    page.get_by_label("Organization").select_option(label="Second Co")
    expect(page.locator("#messages")).to_contain_text("Switched to Second Co")
    expect(page.get_by_role("main")).to_contain_text("People in Second Co")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-switcher-desktop.png")
    _phone_screenshot(page, "ui-switcher-phone.png")
