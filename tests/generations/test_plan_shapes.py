"""Plan shapes through submission and running (docs/planning.md, "Plan shapes"): a fair-use
unlimited plan's jobs cost nothing and are throttled past the cap (lowest priority, or a start
time by the hourly rate), the plan's `watermark` flag reaches the backend with each job, and
the generate page hides credit prices on unlimited plans. The ledger is checked after each
test (tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Plan
from credits.models import EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.backends import RunRequest
from generations.backends.comfyui.workflow import build_workflow
from generations.models import JobStatus
from generations.services.submission import FAIR_USE_THROTTLED_PRIORITY, PRIORITY_BY_TIER
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


def submit(org, model="sdxl", params=None, **kw):
    return services.generation_submit(
        organization=org, model_slug=model, params=params or {"prompt": "a cat"}, **kw
    )


def set_plan(slug, **fields) -> None:
    Plan.objects.filter(slug=slug).update(**fields)


# --- Fair-use unlimited ---------------------------------------------------------------------------


def test_unlimited_job_runs_and_is_charged_nothing():
    org = make_org(plan="unlimited")
    make_ai_model(credits="7.5")
    job, _ = submit(org)
    assert (job.credits_held, job.priority) == (0, PRIORITY_BY_TIER["normal"])
    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert (job.status, job.credits_charged) == (JobStatus.SUCCEEDED, 0)
    assert job.hold.status == HoldStatus.CAPTURED
    assert job.hold.metadata["list_credits"] == "7.500"
    account = account_of(org)
    assert (account.balance, account.held) == (0, 0)
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_unlimited_failed_job_releases_its_usage_hold():
    org = make_org(plan="unlimited")
    make_ai_model()
    job, _ = submit(org, params={"prompt": "boom [fail]"})
    assert services.generation_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.hold.status == HoldStatus.RELEASED
    assert job.credits_charged == 0


def test_past_the_cap_jobs_get_the_lowest_priority_and_still_run():
    set_plan("unlimited", fair_use_cap=1, max_concurrent_jobs=None)
    org = make_org(plan="unlimited")
    make_ai_model()
    first, _ = submit(org, params={"prompt": "one"})
    second, _ = submit(org, params={"prompt": "two"})
    assert first.priority == PRIORITY_BY_TIER["normal"]
    assert second.priority == FAIR_USE_THROTTLED_PRIORITY > PRIORITY_BY_TIER["low"]
    assert "lowest priority" in second.events.get().message
    assert services.generation_run(job_id=second.pk) == "succeeded"


def test_rate_throttled_job_does_not_start_before_its_time():
    set_plan(
        "unlimited",
        fair_use_cap=1,
        fair_use_throttle="rate",
        fair_use_hourly_rate=2,
        max_concurrent_jobs=None,
    )
    org = make_org(plan="unlimited")
    make_ai_model()
    now = timezone.now()
    submit(org, params={"prompt": "in"}, now=now)
    due_now, _ = submit(org, params={"prompt": "a"}, now=now)
    later, _ = submit(org, params={"prompt": "b"}, now=now)
    assert due_now.enqueued_at == now
    assert later.enqueued_at == now + timedelta(minutes=30)
    assert "starts no earlier than" in later.events.get().message
    assert services.generation_run(job_id=later.pk) == "throttled"
    later.refresh_from_db()
    assert later.status == JobStatus.QUEUED
    assert services.generation_run(job_id=due_now.pk) == "succeeded"


def test_unlimited_cached_result_is_free(settings):
    settings.GENERATIONS_RESULT_CACHE_TTL_S = 3600
    org = make_org(plan="unlimited")
    model = make_ai_model()
    model.cache_price_credits = D("1")
    model.save(update_fields=["cache_price_credits"])
    job, _ = submit(org, params={"prompt": "same", "seed": 1})
    services.generation_run(job_id=job.pk)
    again, _ = submit(org, params={"prompt": "same", "seed": 1})
    assert again.cached and (again.credits_charged, again.hold) == (0, None)


# --- Watermark ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "marked"), [("free", True), ("starter", False)])
def test_watermark_flag_of_the_plan_reaches_the_backend(plan, marked):
    org = make_org(plan=plan)
    make_ai_model(credits="1")
    job, _ = submit(org)
    assert job.hold.metadata["watermark"] is marked
    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.result["watermark"] is marked


def test_watermark_is_pinned_at_acceptance():
    org = make_org(plan="free")
    make_ai_model(credits="1")
    job, _ = submit(org)
    set_plan("free", watermark=False)  # changed while the job waits
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["watermark"] is True


def test_comfyui_workflow_gets_the_watermark_value_and_the_customer_cannot_override_it():
    template = {
        "1": {"class_type": "Watermark", "inputs": {"enabled": "{{watermark}}"}},
        "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "{{job_id}}"}},
    }
    request = RunRequest(
        job_id="j-1",
        model_slug="sdxl",
        pool_slug="a100",
        params={"prompt": "x", "watermark": False},
        backend_config={"workflow": template},
        timeout_s=10,
        watermark=True,
    )
    workflow, _, values = build_workflow(request)
    assert workflow["1"]["inputs"]["enabled"] is True
    assert values["watermark"] is True


# --- The generate page --------------------------------------------------------------------------


def _page(client, org):
    user = org.memberships.get().user
    client.force_login(user)
    return client.get(reverse("generations:generate")).content.decode()


def test_generate_page_hides_credit_prices_on_an_unlimited_plan(client):
    make_ai_model(credits="7.5")
    page = _page(client, make_org(plan="unlimited"))
    assert 'data-testid="model-price"' not in page
    assert 'data-testid="credits-available"' not in page
    assert 'data-testid="fair-use"' in page
    assert "fair-use-throttled" not in page


def test_generate_page_shows_the_throttle_state(client):
    set_plan("unlimited", fair_use_cap=1)
    make_ai_model()
    org = make_org(plan="unlimited")
    job, _ = submit(org)
    services.generation_run(job_id=job.pk)
    page = _page(client, org)
    assert 'data-testid="fair-use-throttled"' in page
    assert "lowest priority" in page


def test_generate_page_shows_prices_on_a_credit_plan(client):
    make_ai_model(credits="7.5")
    page = _page(client, make_org(plan="starter"))
    assert 'data-testid="model-price"' in page and "7.5" in page
    assert 'data-testid="fair-use"' not in page


def test_ledger_entries_only_for_credit_plans():
    make_ai_model(credits="2")
    paid, free = make_org(plan="starter"), make_org(plan="unlimited")
    for org in (paid, free):
        job, _ = submit(org)
        services.generation_run(job_id=job.pk)
    assert LedgerEntry.objects.filter(account=account_of(paid), kind=EntryKind.CAPTURE).count() == 1
    assert not LedgerEntry.objects.filter(account=account_of(free)).exists()
