"""The first hour of a new user on the generate page (issue 10 §4), in a real browser on a
desktop (1280×800) and a phone (390×844): an empty seed is drawn at random and shown; a refused
second submission keeps the running job's panel; a 20,000-character prompt gets a short,
human error (not a page thousands of pixels tall); a cancelled job reads as never run, its hold
as released without a reload; the ledger's reference links to the job.

No worker runs: the first job stays queued, which is what the refusal and the cancel need.
Screenshots go to UI_SCREENSHOT_DIR (default /tmp) as ui-first-hour-*.png.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.browser.helpers import log_in

pytestmark = [
    pytest.mark.browser,
    # live_server needs committed data (plans and packs: tests/browser/conftest.py).
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
DATE = re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d:\d\d$")


def _login(page, base, user):
    log_in(page, base, user.email, "correct-horse-battery", landing=f"{base}/")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_first_hour_on_the_generate_page(live_server, browser_page, settings, viewport):
    from playwright.sync_api import expect

    from generations.models import Job, JobStatus
    from tests.factories import make_ai_model, make_org

    settings.GENERATIONS_FREE_TIER_MAX_QUEUED = 100  # the one queued job must not look busy
    org = make_org(name="New Studio", slug=f"new-studio-{viewport}", plan="free")  # 1 job at once
    make_ai_model("sdxl", name="SDXL Turbo", credits="5")
    page = browser_page
    page.set_viewport_size(VIEWPORTS[viewport])
    base = live_server.url
    _login(page, base, org.memberships.get().user)

    # 1. Seed left empty: a real random seed is drawn, shown on the job, reusable.
    page.goto(f"{base}/generate/?model=sdxl")
    page.get_by_label("Prompt").fill("a lighthouse at dawn")
    expect(page.get_by_label("Seed")).to_have_value("")
    page.locator("#generate-button").click()
    panel = page.locator("#job-panel")
    expect(panel).to_be_visible()
    job = Job.objects.get(organization=org)
    seed = job.params["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    expect(page.get_by_test_id("job-seed")).to_contain_text(str(seed))
    expect(page.get_by_test_id("job-seed")).to_contain_text("random")
    expect(page.get_by_label("Seed")).to_have_value("")  # the next press draws a new one
    expect(page.get_by_test_id("job-node")).to_have_text("not yet")
    created = panel.locator("time").first.inner_text()
    assert DATE.match(created), created

    # 2. A second submission is refused (one job at a time): the queued job's panel stays.
    page.get_by_label("Prompt").fill("a second lighthouse")
    page.locator("#generate-button").click()
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("Too many jobs at once")
    expect(refusal).to_be_in_viewport()
    expect(panel).to_be_visible()
    expect(panel).to_have_attribute("aria-label", f"Job {job.pk}")
    expect(panel).to_have_attribute("data-status", "queued")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-first-hour-refusal-{viewport}.png", full_page=True)
    assert Job.objects.filter(organization=org).count() == 1

    # 3. A 20,000-character prompt and a negative seed: short sentences next to the fields.
    page.evaluate(
        """() => {
            document.getElementById("generate-form").setAttribute("novalidate", "");
            document.getElementById("id_params-prompt").removeAttribute("maxlength");
        }"""
    )
    page.get_by_label("Prompt").fill("lighthouse " * 1820)  # 20,020 characters
    page.get_by_label("Seed").fill("-5")
    page.locator("#generate-button").click()
    prompt_error = page.locator("#id_params-prompt_error")
    expect(prompt_error).to_have_text("Prompt is too long (at most 4,000 characters).")
    expect(page.locator("#id_params-seed_error")).to_have_text("Seed must be 0 or more.")
    expect(page.locator("#refusal")).to_contain_text("Check the parameters")
    expect(panel).to_have_attribute("aria-label", f"Job {job.pk}")  # still there
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 3000, f"the error page is {height} px tall"
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-first-hour-errors-{viewport}.png", full_page=True)

    # 4. Cancel on the job's page: "Running" never happened, no node, the hold is released —
    #    without a reload.
    panel.get_by_role("link", name="Status log and ledger").click()
    page.wait_for_url(f"{base}/generate/jobs/{job.pk}/")
    expect(page.locator("#job-detail")).to_contain_text("(held)")
    page.evaluate("window.__marker = 1")
    page.get_by_test_id("job-cancel").click()
    detail = page.locator("#job-detail")
    expect(detail).to_have_attribute("data-status", "cancelled")
    steps = detail.locator(".job-steps li")
    expect(steps.nth(1)).to_have_class("skipped")
    expect(steps.nth(2)).to_have_text("Cancelled")
    expect(page.get_by_test_id("job-node")).to_have_text("never ran")
    expect(detail).to_contain_text("(released)")
    expect(detail).not_to_contain_text("(held).")
    assert page.evaluate("window.__marker") == 1  # no reload
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-first-hour-cancelled-{viewport}.png", full_page=True)

    # 5. The ledger: dates and amounts as on the job pages; the reference opens the job.
    page.goto(f"{base}/credits/ledger/")
    first_date = page.locator("#ledger-table tbody tr").first.locator("time").inner_text()
    assert DATE.match(first_date), first_date
    expect(page.locator("#ledger-table tbody tr.entry-hold")).to_contain_text("−5 (held)")
    link = page.locator("#ledger-table tbody tr.entry-release").get_by_test_id("entry-job-link")
    expect(link).to_have_text(f"job:{job.pk}")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-first-hour-ledger-{viewport}.png", full_page=True)
    link.click()
    page.wait_for_url(f"{base}/generate/jobs/{job.pk}/")
    expect(page.locator("#job-detail")).to_have_attribute("data-status", "cancelled")
