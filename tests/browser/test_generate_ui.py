"""End to end in a real browser with a real Celery worker: log in, generate on the page, watch
the job panel (htmx polling) go to succeeded, then find the charge in the credits ledger.
Screenshots at phone and desktop widths go to UI_SCREENSHOT_DIR (default /tmp) as
ui-generate-*.png.

The job runs on a real `celery -A config worker` process (tests/generations/conftest.py's
`start_worker`) pointed at this test's database — the one live_server serves from — and the
test Redis: the page's submission enqueues on commit exactly as in production, so nothing here
is faked between the browser and the ledger.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.browser.helpers import log_in

# A real Celery worker process on this test's database (see the module docstring).
from tests.generations.conftest import purge_queues, start_worker, worker_env  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    # live_server needs committed data (plans and packs: tests/browser/conftest.py).
    pytest.mark.django_db(transaction=True),
]

SCREENSHOT_DIR = os.environ.get("UI_SCREENSHOT_DIR", "/tmp")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _login(page, base, user):
    log_in(page, base, user.email, "correct-horse-battery", landing=f"{base}/")


@pytest.mark.worker
@pytest.mark.usefixtures("purge_queues")
def test_generate_watch_the_job_complete_and_see_the_charge(live_server, browser_page, request):
    from playwright.sync_api import expect

    from generations.models import Job, JobStatus
    from tests.factories import make_ai_model, make_org, make_pool

    org = make_org(name="Pixel Forge", slug="pixel-forge", plan="starter")
    # About 1.5 s on the GPU, so the panel is seen queued/running before it succeeds.
    make_ai_model(
        "sdxl",
        name="SDXL Turbo",
        credits="5",
        description="Fast 1024² images in a few steps.",
        backend_config={"mean_s": 1.5, "sigma": 0.05},
    )
    make_ai_model(
        "flux-schnell",
        name="Flux Schnell",
        pool=make_pool("l4", gpu_type="L4", rate="0.80"),
        credits="2.5",
        description="Sharp text and hands; runs on L4 nodes.",
    )
    request.getfixturevalue("start_worker")(queues="gpu.a100", GENERATIONS_SIMULATED_SPEEDUP=1)

    page = browser_page
    base = live_server.url
    _login(page, base, org.memberships.get().user)

    # The generate page through the nav: models with pool and price, credits available.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Generate").click()
    page.wait_for_url(f"{base}/generate/")
    cards = page.get_by_test_id("model-cards")
    expect(cards).to_contain_text("SDXL Turbo")
    expect(cards).to_contain_text("A100 · a100 pool")
    expect(cards.locator("[data-model=sdxl]")).to_contain_text("5 credits")
    expect(cards.locator("[data-model=flux-schnell]")).to_contain_text("2.5 credits")
    expect(page.get_by_test_id("credits-available")).to_have_text("500")

    # Pick SDXL (htmx swaps the form without a page load), keep the prompt across the switch.
    page.evaluate("window.__marker = 1")
    page.get_by_label("Prompt").fill("a lighthouse at dawn, volumetric fog")
    cards.locator("[data-model=sdxl]").click()
    expect(cards.locator("[data-model=sdxl]")).to_have_attribute("aria-current", "true")
    expect(page.locator("#generate-button")).to_contain_text("5 credits")
    expect(page.get_by_label("Prompt")).to_have_value("a lighthouse at dawn, volumetric fog")
    page.get_by_label("Seed").fill("42")
    page.locator("#generate-button").click()

    # The job panel appears and follows the job by polling, without reloading the page.
    panel = page.locator("#job-panel")
    expect(panel).to_be_visible()
    panel.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-panel-pending.png")
    job = Job.objects.get(organization=org)
    assert job.params == {"prompt": "a lighthouse at dawn, volumetric fog", "seed": 42}
    expect(page).to_have_url(re.compile(rf"/generate/\?model=sdxl&job={job.pk}$"))
    expect(panel).to_have_attribute("data-status", "succeeded", timeout=30_000)
    assert page.evaluate("window.__marker") == 1
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded")
    expect(page.get_by_test_id("job-charged")).to_contain_text("5")
    expect(page.get_by_test_id("job-result")).to_contain_text("Seed")
    expect(page.get_by_test_id("job-result")).to_contain_text("42")
    expect(panel).not_to_have_attribute("hx-trigger", re.compile(".*"))  # polling stopped
    expect(page.get_by_test_id("credits-available")).to_have_text("495")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.node
    expect(panel).to_contain_text(job.node)

    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-phone.png", full_page=True)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-phone-top.png")
    page.set_viewport_size(DESKTOP)

    # The job's page: its status log and the ledger entries of its hold.
    panel.get_by_role("link", name="Status log and ledger").click()
    page.wait_for_url(f"{base}/generate/jobs/{job.pk}/")
    expect(page.locator("#events-table tbody tr")).to_have_count(3)
    expect(page.locator("#job-ledger-table tbody tr.entry-capture")).to_contain_text("−5")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-job-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-job-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)

    # The history lists it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.wait_for_url(f"{base}/generate/jobs/")
    expect(page.locator(f"#job-{job.pk}")).to_contain_text("Succeeded")
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-jobs-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-jobs-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)

    # And the credits ledger shows the capture of 5 credits from the job's hold.
    page.goto(f"{base}/credits/ledger/")
    capture = page.locator("#ledger-table tbody tr.entry-capture")
    expect(capture).to_have_count(1)
    expect(capture).to_contain_text("−5")
    expect(capture).to_contain_text(f"job:{job.pk}")


def test_a_refusal_is_explained_at_the_top_of_the_form(live_server, browser_page):
    from playwright.sync_api import expect

    from credits.models import CreditHold
    from generations.models import Job
    from tests.factories import make_account, make_ai_model

    account = make_account(plan="free", credits=2, slug="short-on-credits")
    make_ai_model("sdxl", name="SDXL Turbo", credits="5")
    page = browser_page
    base = live_server.url
    _login(page, base, account.organization.memberships.get().user)

    page.goto(f"{base}/generate/")
    page.set_viewport_size(PHONE)
    page.get_by_label("Prompt").fill("a lighthouse at dawn")
    page.locator("#generate-button").click()
    refusal = page.locator("#refusal")
    expect(refusal).to_contain_text("Not enough credits")
    expect(refusal).to_contain_text("needs 5 credits and 2 are available")
    expect(refusal.get_by_role("link", name="See your credits")).to_have_attribute(
        "href", "/credits/"
    )
    expect(page.get_by_label("Prompt")).to_have_value("a lighthouse at dawn")
    assert not Job.objects.exists() and not CreditHold.objects.exists()
    page.screenshot(path=f"{SCREENSHOT_DIR}/ui-generate-refusal-phone.png", full_page=True)
