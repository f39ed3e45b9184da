"""Issue 10 §4 in a real browser, on a desktop (1280×800) and a phone (390×844): the staff
landing page, the fuller dashboard, the billing page without Stripe, a revoked key's secret
leaving the page, the 404 page and the favicon."""

from __future__ import annotations

import os

import pytest

from tests.browser.helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PASSWORD = "pw-first-hour-123"


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request, browser_page):
    browser_page.set_viewport_size(VIEWPORTS[request.param])
    return request.param


def _login(page, base, email):
    log_in(page, base, email, PASSWORD)


def _fits_the_width(page) -> None:
    """Nothing makes the page scroll sideways."""
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow}px wider than the viewport"


def _csp_watch(page) -> list[str]:
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return seen


def test_staff_land_on_the_overview_and_find_it_from_every_staff_page(
    live_server, browser_page, viewport, settings
):
    from playwright.sync_api import expect

    from accounts.models import User
    from generations.demo import seed_world

    settings.STRIPE_SECRET_KEY = ""
    seed_world(days=7, seed=3)
    staff = User.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    page, base = browser_page, live_server.url
    csp = _csp_watch(page)

    # Staff without an organization: the login lands on the overview, not "no organization".
    _login(page, base, staff.email)
    page.wait_for_url(f"{base}/staff/")
    expect(page.get_by_role("heading", name="Staff overview")).to_be_visible()
    expect(page.get_by_role("main")).not_to_contain_text("You are not in any organization")
    for section in ("staff-alerts", "staff-costs", "staff-fleet", "staff-prices"):
        expect(page.get_by_test_id(section)).to_be_visible()
    expect(page.locator("#pool-a100")).to_be_visible()
    expect(page.get_by_test_id("staff-alerts")).to_contain_text("Stripe is not configured")
    _fits_the_width(page)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-staff-home-{viewport}.png", full_page=True)

    # From the cost report and the pricing page back through the staff nav.
    for path in ("/staff/costs/", "/staff/pricing/"):
        page.goto(f"{base}{path}")
        page.locator("nav.staff-nav").get_by_role("link", name="Overview").click()
        page.wait_for_url(f"{base}/staff/")
    # And from the admin.
    page.goto(f"{base}/admin/")
    page.get_by_test_id("admin-staff-overview").click()
    page.wait_for_url(f"{base}/staff/")
    # The "no organization" page points staff there too.
    page.goto(f"{base}/organizations/new/")
    page.get_by_test_id("staff-overview-link").get_by_role("link").click()
    page.wait_for_url(f"{base}/staff/")
    assert csp == []


def test_dashboard_jobs_usage_generate_and_upgrade_then_billing_without_stripe(
    live_server, browser_page, viewport, settings
):
    from playwright.sync_api import expect

    from generations import services
    from tests.factories import UserFactory, make_ai_model, make_org

    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    settings.STRIPE_SECRET_KEY = ""
    owner = UserFactory(email="owner@first.test", password=PASSWORD)
    org = make_org(name="First Hour", plan="starter", owner=owner)
    make_ai_model("sdxl", credits="5", name="Stable Diffusion XL")
    for i in range(3):
        job = services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": f"a cat {i}"}
        )[0]
        services.generation_run(job_id=job.pk)
    page, base = browser_page, live_server.url
    csp = _csp_watch(page)

    _login(page, base, owner.email)
    page.wait_for_url(f"{base}/")
    jobs = page.get_by_test_id("dashboard-jobs")
    expect(jobs.locator(".recent-job")).to_have_count(3)
    expect(jobs).to_contain_text("Stable Diffusion XL")
    expect(jobs).to_contain_text("Succeeded")
    chart = page.get_by_test_id("dashboard-usage").get_by_test_id("usage-chart")
    expect(chart).to_be_visible()
    expect(chart.locator(".chart-bar")).to_have_count(1)  # today's 15 credits
    expect(page.get_by_test_id("dashboard-generate")).to_be_visible()
    _fits_the_width(page)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-dashboard-{viewport}.png", full_page=True)

    # A job links to its page; the Generate button to the generate page.
    jobs.locator(".recent-job a").first.click()
    page.wait_for_url(f"{base}/generate/jobs/**")
    page.goto(f"{base}/")
    page.get_by_test_id("dashboard-generate").click()
    page.wait_for_url(f"{base}/generate/")

    # The upgrade path leads to the next plan on the billing page, which says plainly that
    # payments are off and what the operator does.
    page.goto(f"{base}/")
    upgrade = page.get_by_test_id("dashboard-upgrade").get_by_role("link")
    expect(upgrade).to_contain_text("Upgrade to Creator")
    upgrade.click()
    page.wait_for_url(f"{base}/credits/billing/#plan-creator")
    notice = page.locator("#billing-not-configured")
    expect(notice).to_contain_text("You can't upgrade, buy credits or manage a card here yet")
    expect(page.get_by_test_id("plan-creator").get_by_role("button")).to_be_disabled()
    notice.get_by_text("For the operator: how to turn payments on").click()
    expect(notice).to_contain_text("STRIPE_WEBHOOK_SECRET")
    expect(notice).to_contain_text("stripe_sync")
    _fits_the_width(page)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-billing-off-{viewport}.png", full_page=True)
    assert csp == []


def test_a_revoked_keys_secret_leaves_the_copy_it_now_box(live_server, browser_page, viewport):
    from playwright.sync_api import expect

    from tests.factories import UserFactory, make_org

    owner = UserFactory(email="keys@first.test", password=PASSWORD)
    make_org(name="Keys Co", plan="starter", owner=owner)
    page, base = browser_page, live_server.url
    _login(page, base, owner.email)
    page.goto(f"{base}/api-keys/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    raw_key = page.get_by_test_id("new-api-key").inner_text().strip()
    assert raw_key.startswith("gpuc_")

    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#api-keys-table tr", has_text="laptop").get_by_role(
        "button", name="Revoke"
    ).click()
    expect(page.locator("#api-keys-table tr", has_text="laptop")).to_contain_text("revoked")
    expect(page.get_by_test_id("new-key-box")).to_contain_text("was revoked")
    expect(page.get_by_test_id("new-api-key")).to_have_count(0)
    assert raw_key not in page.content()
    _fits_the_width(page)


def test_not_found_page_and_favicon(live_server, browser_page, viewport):
    from playwright.sync_api import expect

    page, base = browser_page, live_server.url
    response = page.goto(f"{base}/no-such-page/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    icon = page.locator('link[rel="icon"]')
    expect(icon).to_have_attribute("href", "/static/favicon.svg")
    _fits_the_width(page)
    favicon = page.goto(f"{base}/favicon.ico")
    assert favicon.status == 200
    assert favicon.url.endswith("/static/favicon.svg")
    assert "image/svg+xml" in favicon.headers["content-type"]
