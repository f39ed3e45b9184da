"""Web UI of generations: the generate page (catalog with prices, params form from the JSON
Schema, submit with a per-form token, refusals), the job panel's htmx polling and cancel, the
job history (filters, keyset pagination) and a job's page (status log, ledger entries) — with
tenancy: another organization's job is a 404 everywhere."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from credits.models import CreditHold, EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import Job, JobStatus
from tests.factories import account_of, make_account, make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]

GENERATE = "/generate/"
JOBS = "/generate/jobs/"
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


def _login(client: Client, org) -> Client:
    client.force_login(org.memberships.get().user)
    client.get(reverse("dashboard"))  # sets the active organization
    return client


def _text(response) -> str:
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _token(response) -> str:
    match = re.search(r'name="form_token" value="([0-9a-f-]{36})"', response.content.decode())
    assert match, "the form has no token"
    return match.group(1)


def _post(client, *, model="sdxl", token=None, headers=None, **params):
    data = {"model": model, "form_token": token or str(uuid.uuid4())}
    data.update({f"params-{k}": v for k, v in params.items()})
    return client.post(GENERATE, data, **(headers or {}))


def _nothing_written(org):
    assert not Job.objects.filter(organization=org).exists()
    assert not CreditHold.objects.filter(account__organization=org).exists()
    kinds = set(
        LedgerEntry.objects.filter(account__organization=org).values_list("kind", flat=True)
    )
    assert kinds <= {EntryKind.GRANT, EntryKind.ADJUSTMENT}


@pytest.fixture
def org():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def client(org):
    return _login(Client(), org)


@pytest.fixture
def sdxl():
    return make_ai_model("sdxl", name="SDXL Turbo", credits="5", description="Fast images")


# --- The generate page --------------------------------------------------------------------------


def test_pages_need_login(sdxl):
    anonymous = Client()
    for url in (GENERATE, JOBS, f"{JOBS}{uuid.uuid4()}/", f"{JOBS}{uuid.uuid4()}/status/"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"], url
    assert anonymous.post(GENERATE, {"model": "sdxl"}).status_code == 302
    assert not Job.objects.exists()


def test_generate_page_lists_active_models_with_pool_and_price(client, sdxl):
    from tests.factories import make_pool

    l4 = make_pool("l4", gpu_type="L4", rate="0.80")
    make_ai_model("flux", name="Flux Schnell", pool=l4, credits="2.5")
    make_ai_model("retired", name="Old Model", credits="1", is_active=False)
    response = client.get(GENERATE)
    assert response.status_code == 200
    text = _text(response)
    assert "SDXL Turbo" in text and "Flux Schnell" in text
    assert "Old Model" not in text
    assert "A100 · a100 pool" in text and "L4 · l4 pool" in text
    assert "5 credits / generation" in text and "2.5 credits / generation" in text
    assert "500 credits available" in text  # the starter plan's grant
    # The first model (by slug) is selected: its form and price on the button.
    assert 'data-model="flux" hx-get' in response.content.decode() or "flux" in text
    assert re.search(
        r"Generate\s*<span class=\"btn-price\">· 2.5 credits", response.content.decode()
    )
    # Selecting another model (a link: works without JS) shows its price on the button.
    response = client.get(GENERATE, {"model": "sdxl"})
    assert re.search(r"Generate\s*<span class=\"btn-price\">· 5 credits", response.content.decode())
    assert 'aria-current="true"' in response.content.decode()
    # Nav links.
    assert 'href="/generate/"' in response.content.decode()
    assert 'href="/generate/jobs/"' in response.content.decode()


def test_model_switch_through_htmx_returns_the_workspace_and_keeps_the_prompt(client, sdxl):
    make_ai_model("flux", name="Flux", credits="2")
    response = client.get(GENERATE, {"model": "flux", "params-prompt": "a red fox"}, **HX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="generate-workspace"') or "generate-workspace" in body
    assert "<html" not in body
    assert "a red fox</textarea>" in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_no_models_shows_an_empty_state(client):
    response = client.get(GENERATE)
    assert response.status_code == 200
    assert "No models yet" in _text(response)


def test_params_form_is_built_from_the_json_schema(client):
    schema = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
            "negative_prompt": {"type": "string", "maxLength": 500},
            "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
            "guidance": {"type": "number", "minimum": 0, "maximum": 20, "title": "CFG scale"},
            "style": {"type": "string", "enum": ["photo", "anime"], "default": "photo"},
            "size": {"enum": [512, 1024]},
            "hires": {"type": "boolean", "description": "Upscale the result."},
            "loras": {"type": "array", "items": {"type": "string"}},
            "seed": {"type": "integer", "minimum": 0},
        },
        "required": ["prompt", "style"],
        "additionalProperties": False,
    }
    make_ai_model("sdxl", params_schema=schema)
    body = client.get(GENERATE).content.decode()
    assert re.search(r'<textarea name="params-prompt"[^>]*maxlength="2000"[^>]*required', body)
    assert re.search(r'<textarea name="params-negative_prompt"', body)
    assert re.search(r'<input type="number" name="params-steps" value="20"[^>]*min="1"', body)
    assert re.search(r'<input type="number" name="params-guidance"[^>]*step="any"', body)
    assert "CFG scale" in body
    assert re.search(r'<select name="params-style"', body)
    assert re.search(r'<option value="&quot;photo&quot;" selected>photo</option>', body)
    assert re.search(r'<select name="params-size"', body)
    assert re.search(r'<input type="checkbox" name="params-hires"', body)
    assert "Upscale the result." in body
    assert re.search(r'<textarea name="params-loras"[^>]*class="json-input"', body)
    assert re.search(r'<input type="number" name="params-seed"[^>]*placeholder="Random"', body)
    # Field order: prompt first, seed last.
    assert body.index("params-prompt") < body.index("params-steps") < body.index("params-seed")

    response = _post(
        client,
        prompt="  a lighthouse  ",
        steps="30",
        guidance="7.5",
        style='"anime"',
        size="1024",
        hires="on",
        loras='["film-grain"]',
        seed="",
        negative_prompt="",
    )
    assert response.status_code == 302
    job = Job.objects.get()
    seed = job.params.pop("seed")  # left empty: drawn at random (see test_seed_* below)
    assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
    assert job.params == {
        "prompt": "a lighthouse",
        "steps": 30,
        "guidance": 7.5,
        "style": "anime",
        "size": 1024,
        "hires": True,
        "loras": ["film-grain"],
    }


# --- Submitting -----------------------------------------------------------------------------


def test_submit_creates_one_job_and_hold_and_redirects_to_its_panel(client, org, sdxl):
    page = client.get(GENERATE)
    token = _token(page)
    response = _post(client, token=token, prompt="a lighthouse at dawn", seed="42")
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{GENERATE}?model=sdxl&job={job.pk}"
    assert job.status == JobStatus.QUEUED
    assert job.params == {"prompt": "a lighthouse at dawn", "seed": 42}
    assert job.created_by == org.memberships.get().user
    assert job.idempotency_key == f"web-form:{token}"
    assert job.hold.status == HoldStatus.HELD and job.credits_held == D(5)
    assert account_of(org).held == D(5)

    page = client.get(response["Location"])
    body = page.content.decode()
    assert 'id="job-panel"' in body
    assert f'hx-get="/generate/jobs/{job.pk}/status/"' in body
    assert 'hx-trigger="every 1s"' in body
    assert "495 credits available" in _text(page)
    assert _token(page) != token  # a fresh form: the next press is a new job
    assert "\na lighthouse at dawn</textarea>" in body  # the form keeps the job's settings


def test_double_submit_with_the_same_form_token_creates_one_job(client, org, sdxl):
    token = _token(client.get(GENERATE))
    first = _post(client, token=token, prompt="a cat")
    second = _post(client, token=token, prompt="a cat")
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert Job.objects.count() == 1
    assert CreditHold.objects.filter(account__organization=org).count() == 1
    assert account_of(org).held == D(5)
    page = client.get(second["Location"])
    assert "already submitted" in _text(page)


def test_same_token_with_different_settings_is_refused_with_a_fresh_form(client, sdxl):
    token = _token(client.get(GENERATE))
    _post(client, token=token, prompt="a cat")
    response = _post(client, token=token, prompt="a dog")
    assert response.status_code == 409
    assert "This form was already submitted" in _text(response)
    assert _token(response) != token
    assert Job.objects.count() == 1


def test_htmx_submit_returns_the_workspace_with_the_polling_panel(client, sdxl):
    token = _token(client.get(GENERATE))
    response = _post(client, token=token, prompt="a cat", headers=HX)
    job = Job.objects.get()
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="generate-workspace"' in body
    assert 'id="job-panel"' in body and 'hx-trigger="every 1s"' in body
    assert response["HX-Push-Url"] == f"{GENERATE}?model=sdxl&job={job.pk}"
    assert _token(response) != token


def test_missing_form_token_still_submits_once(client, sdxl):
    response = client.post(GENERATE, {"model": "sdxl", "params-prompt": "a cat"})
    assert response.status_code == 302
    assert Job.objects.get().idempotency_key is None


# --- Refusals: a clear message, nothing written ---------------------------------------------


def test_insufficient_credits_is_explained_with_a_link_and_writes_nothing(sdxl):
    account = make_account(plan="free", credits=2, slug="broke")
    org = account.organization
    client = _login(Client(), org)
    response = _post(client, prompt="a cat")
    assert response.status_code == 402
    text = _text(response)
    assert "Not enough credits" in text
    assert "needs 5 credits and 2 are available" in text
    assert 'href="/credits/"' in response.content.decode()
    assert 'data-code="insufficient_credits"' in response.content.decode()
    assert "\na cat</textarea>" in response.content.decode()  # what was typed is kept
    _nothing_written(org)


def test_concurrent_jobs_quota_names_the_limit(sdxl):
    org = make_org(slug="freebie", plan="free")
    services.generation_submit(organization=org, model_slug="sdxl", params={"prompt": "first"})
    client = _login(Client(), org)
    response = _post(client, prompt="second")
    assert response.status_code == 429
    text = _text(response)
    assert "Too many jobs at once" in text
    assert "up to 1 job at a time" in text
    assert "?status=queued" in response.content.decode()
    assert Job.objects.filter(organization=org).count() == 1
    assert CreditHold.objects.filter(account__organization=org).count() == 1


def test_daily_cap_quota_names_the_limit_and_the_reset(sdxl):
    org = make_org(slug="daily", plan="free")
    plan = org.subscription.plan
    plan.daily_generation_cap, plan.max_concurrent_jobs = 1, None
    plan.save()
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": "first"}
    )
    services.generation_run(job_id=job.pk)
    client = _login(Client(), org)
    response = _post(client, prompt="second")
    assert response.status_code == 429
    text = _text(response)
    assert "Daily generation limit reached" in text
    assert "allows 1 generations a day" in text and "midnight UTC" in text
    assert Job.objects.filter(organization=org).count() == 1


def test_server_busy_says_when_to_retry(settings, sdxl):
    settings.GENERATIONS_FREE_TIER_MAX_QUEUED = 0
    settings.GENERATIONS_SERVER_BUSY_RETRY_AFTER_S = 17
    org = make_org(slug="busy", plan="free")
    client = _login(Client(), org)
    response = _post(client, prompt="a cat")
    assert response.status_code == 503
    assert response["Retry-After"] == "17"
    text = _text(response)
    assert "The GPUs are busy" in text and "17" in text
    _nothing_written(org)
    # Through htmx the same message is swapped in (htmx does not swap error statuses).
    response = _post(client, prompt="a cat", headers=HX)
    assert response.status_code == 200 and "The GPUs are busy" in _text(response)
    _nothing_written(org)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"prompt": "a cat", "seed": "-1"}, "seed", "Seed must be 0 or more."),
        ({"prompt": "x" * 4001}, "prompt", "Prompt is too long (at most 4,000 characters)."),
        ({"prompt": ""}, "prompt", "This field is required."),
        ({"prompt": "a cat", "seed": "1.5"}, "seed", "Enter a whole number."),
    ],
)
def test_schema_errors_are_shown_next_to_their_field_and_nothing_is_written(
    client, org, sdxl, params, field, message
):
    response = _post(client, **params)
    assert response.status_code == 400
    body = response.content.decode()
    error = re.search(
        rf'<small class="field-error" id="id_params-{field}_error">([^<]*)</small>', body
    )
    assert error and message in error.group(1), body[:2000]
    assert 'data-code="validation_error"' in body
    _nothing_written(org)


def test_invalid_json_param_and_unknown_model_are_refused(client, org):
    make_ai_model(
        "sdxl",
        params_schema={
            "type": "object",
            "properties": {"prompt": {"type": "string"}, "extra": {"type": "object"}},
        },
    )
    response = _post(client, prompt="a cat", extra="{not json")
    assert response.status_code == 400
    assert "Not valid JSON" in _text(response)
    for hostile, reason in [
        ('{"a": "\\u0000"}', "NUL characters"),
        ('{"\\ud800": 1}', "Unpaired UTF-16 surrogates"),
        ('{"a": ' * 2000 + "1" + "}" * 2000, "Nested deeper than 64 levels"),
    ]:
        response = _post(client, prompt="a cat", extra=hostile)  # each was a 500
        assert response.status_code == 400
        assert reason in _text(response)
    response = _post(client, prompt="a cat", extra="[1, 2]")  # JSON, but not an object
    assert response.status_code == 400
    assert re.search(
        r'id="id_params-extra_error">Extra must be a JSON object.<', response.content.decode()
    )
    response = _post(client, model="nope", prompt="a cat")
    assert response.status_code == 400
    assert "This model can't run right now" in _text(response)
    _nothing_written(org)


# --- The job panel: polling, results, cancel --------------------------------------------------


def _submit(org, prompt="a cat", **params):
    job, _ = services.generation_submit(
        organization=org,
        model_slug="sdxl",
        params={"prompt": prompt, **params},
        user=org.memberships.get().user,
    )
    return job


def test_status_partial_polls_while_queued_and_stops_when_terminal(client, org, sdxl):
    job = _submit(org, seed=7)
    url = f"{JOBS}{job.pk}/status/"
    response = client.get(url, **HX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert f'hx-get="{url}"' in body and 'hx-trigger="every 1s"' in body
    assert 'data-status="queued"' in body
    assert "Waiting for a GPU in the a100 pool" in _text(response)
    assert "no-cache" in response["Cache-Control"]
    assert 'data-testid="job-cancel"' in body

    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    response = client.get(url, **HX)
    body = response.content.decode()
    text = _text(response)
    assert "hx-trigger" not in body  # polling stops with this swap
    assert 'data-status="succeeded"' in body
    assert "Succeeded" in text
    assert job.node in text
    assert 'data-testid="job-charged">5 ' in body
    assert "captured from the hold" in text
    assert 'data-testid="job-result"' in body and "Seed 7" in text
    # A link to the output file, which answers (tests/generations/test_output_files.py).
    assert f'href="/api/v1/generations/{job.pk}/output/{job.pk}.png"' in body
    assert "<img" not in body
    assert 'data-testid="job-cancel"' not in body


def test_polling_slows_down_for_a_job_waiting_long(client, org, sdxl):
    job = _submit(org)
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    body = client.get(f"{JOBS}{job.pk}/status/", **HX).content.decode()
    assert 'hx-trigger="every 5s"' in body


def test_failed_job_panel_explains_the_release(client, org, sdxl):
    job = _submit(org, prompt="please [fail]")
    assert services.generation_run(job_id=job.pk) == "failed"
    response = client.get(f"{JOBS}{job.pk}/status/", **HX)
    text = _text(response)
    assert "Simulated GPU failure." in text and "gpu_failure" in text
    assert "Nothing was charged" in text
    assert "5 released back to you" in text
    # The page's "credits available" is refreshed out of band: the 5 credits are back.
    assert re.search(
        r'<strong id="gen-available-figure"[^>]*hx-swap-oob="true">500</strong>',
        response.content.decode(),
    )


def test_running_job_panel_shows_the_node_and_elapsed_time(client, org, sdxl):
    job = _submit(org)
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING, node="a100-sim-2", started_at=timezone.now()
    )
    response = client.get(f"{JOBS}{job.pk}/status/", **HX)
    text = _text(response)
    assert "Generating on a100-sim-2" in text
    assert "hx-trigger" in response.content.decode()
    assert 'data-testid="job-cancel"' not in response.content.decode()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, node="", started_at=None)


def test_cancel_from_the_page_releases_the_hold(client, org, sdxl):
    job = _submit(org)
    response = client.post(
        f"{JOBS}{job.pk}/cancel/", {"view": "panel", "next": f"{GENERATE}?job={job.pk}"}
    )
    assert response.status_code == 302 and response["Location"] == f"{GENERATE}?job={job.pk}"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.hold.status == HoldStatus.RELEASED
    assert LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.RELEASE).count() == 1
    assert account_of(org).held == 0
    assert "Cancelled. 5 credits were released." in _text(client.get(response["Location"]))
    # Again: nothing more happens.
    client.post(f"{JOBS}{job.pk}/cancel/")
    assert LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.RELEASE).count() == 1


def test_cancel_through_htmx_returns_the_fragment_it_replaces(client, org, sdxl):
    job = _submit(org)
    response = client.post(f"{JOBS}{job.pk}/cancel/", {"view": "detail"}, **HX)
    body = response.content.decode()
    assert 'id="job-detail"' in body and 'data-status="cancelled"' in body
    assert "hx-trigger" not in body
    assert "Release" in _text(response)  # the ledger entries of the hold, now released

    finished = _submit(org, prompt="another")
    services.generation_run(job_id=finished.pk)
    response = client.post(f"{JOBS}{finished.pk}/cancel/", {"view": "panel"}, **HX)
    assert "can't be cancelled any more: it is succeeded" in _text(response)
    finished.refresh_from_db()
    assert finished.status == JobStatus.SUCCEEDED
    response = client.post(f"{JOBS}{finished.pk}/cancel/")
    assert response.status_code == 302
    assert "can't be cancelled" in _text(client.get(response["Location"]))


def test_cancel_needs_post(client, org, sdxl):
    job = _submit(org)
    assert client.get(f"{JOBS}{job.pk}/cancel/").status_code == 405


# --- Job page: status log and ledger entries ---------------------------------------------------


def test_job_page_shows_the_status_log_and_the_ledger_entries_of_its_hold(client, org, sdxl):
    job = _submit(org, seed=3)
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    other = _submit(org, prompt="unrelated")  # its hold must not appear
    response = client.get(f"{JOBS}{job.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    text = _text(response)
    events = re.findall(r'<tr class="event event-(\w+)">', body)
    assert events == ["queued", "running", "succeeded"]
    assert "accepted at 5 credits" in text
    assert f"started on {job.node}" in text
    assert "charged 5 credits" in text
    kinds = re.findall(r'<tr class="entry entry-(\w+)">', body)
    assert kinds == ["hold", "capture"]
    assert "−5 (held)" in text
    assert job.hold.key in text and other.hold.key not in text
    assert "hx-trigger" not in body  # finished: no polling
    assert "Generate again with these settings" in text
    assert f"{GENERATE}?model=sdxl&amp;job={job.pk}" in body


def test_job_page_of_a_queued_job_polls_its_body(client, org, sdxl):
    job = _submit(org)
    body = client.get(f"{JOBS}{job.pk}/").content.decode()
    assert f'hx-get="{JOBS}{job.pk}/status/?view=detail"' in body
    response = client.get(f"{JOBS}{job.pk}/status/", {"view": "detail"}, **HX)
    assert 'id="job-detail"' in response.content.decode()
    assert re.findall(r'<tr class="entry entry-(\w+)">', response.content.decode()) == ["hold"]


def test_another_tenants_job_is_a_404_everywhere(client, org, sdxl):
    other_org = make_org(slug="rival", plan="starter")
    theirs = _submit(other_org)
    for url in (f"{JOBS}{theirs.pk}/", f"{JOBS}{theirs.pk}/status/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert theirs.params["prompt"] not in response.content.decode()
    assert client.post(f"{JOBS}{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.QUEUED
    # A foreign job id on the generate page is ignored, never shown.
    response = client.get(GENERATE, {"job": str(theirs.pk)})
    assert response.status_code == 200 and str(theirs.pk) not in response.content.decode()
    assert client.get(f"{JOBS}not-a-uuid/").status_code == 404
    assert client.get(f"{JOBS}{uuid.uuid4()}/").status_code == 404
    # Their jobs are not in our history either.
    assert str(theirs.pk) not in client.get(JOBS).content.decode()


# --- Job history --------------------------------------------------------------------------------


def _bulk_jobs(org, model, n, *, start, status=JobStatus.SUCCEEDED, step=timedelta(minutes=1)):
    """Historical jobs straight into the table (no holds: the history only reads jobs)."""
    jobs = []
    for i in range(n):
        at = start + i * step
        jobs.append(
            Job(
                organization=org,
                model=model,
                params={"prompt": f"job {i}"},
                params_hash=f"{i:064d}",
                status=status,
                credits_held=D(5),
                credits_charged=D(5) if status == JobStatus.SUCCEEDED else D(0),
                node="a100-sim-1",
                created_at=at,
                started_at=at + timedelta(seconds=2),
                finished_at=at + timedelta(seconds=5),
            )
        )
    return Job.objects.bulk_create(jobs)


def _row_ids(response) -> list[str]:
    return re.findall(r'<tr id="job-([0-9a-f-]{36})"', response.content.decode())


def test_history_lists_jobs_newest_first_with_keyset_pages_of_50(client, org, sdxl):
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    jobs = _bulk_jobs(org, sdxl, 120, start=start)
    # Two jobs at the very same instant: the id breaks the tie, neither is skipped.
    twins = _bulk_jobs(org, sdxl, 2, start=start + timedelta(minutes=70), step=timedelta(0))
    everything = sorted(jobs + twins, key=lambda j: (j.created_at, j.pk), reverse=True)
    expected = [str(j.pk) for j in everything]

    first = client.get(JOBS)
    assert first.status_code == 200
    assert _row_ids(first) == expected[:50]
    assert "50 jobs on this page" in _text(first)
    older = re.search(r'href="([^"]+before=[^"]+)" rel="next"', first.content.decode()).group(1)
    second = client.get(older.replace("&amp;", "&"))
    assert _row_ids(second) == expected[50:100]
    third_url = re.search(r'href="([^"]+)" rel="next"', second.content.decode()).group(1)
    third = client.get(third_url.replace("&amp;", "&"))
    assert _row_ids(third) == expected[100:]
    assert 'rel="next"' not in third.content.decode()
    # Back: "Newer" from the third page is the second page again.
    newer = re.search(r'href="([^"]+)" rel="prev"', third.content.decode()).group(1)
    assert _row_ids(client.get(newer.replace("&amp;", "&"))) == expected[50:100]
    # htmx gets the panel only.
    partial = client.get(older.replace("&amp;", "&"), **HX)
    assert "<html" not in partial.content.decode() and 'id="jobs-panel"' in partial.content.decode()


def test_history_filters_by_status_model_and_dates(client, org, sdxl):
    from tests.factories import make_pool

    flux = make_ai_model("flux", name="Flux", pool=make_pool("l4", gpu_type="L4"), credits="2")
    day1 = datetime(2026, 1, 5, 10, tzinfo=UTC)
    day2 = datetime(2026, 1, 6, 10, tzinfo=UTC)
    ok_day1 = _bulk_jobs(org, sdxl, 3, start=day1)
    failed_day2 = _bulk_jobs(org, sdxl, 2, start=day2, status=JobStatus.FAILED)
    flux_day2 = _bulk_jobs(org, flux, 1, start=day2 + timedelta(hours=1))

    def ids(**query):
        response = client.get(JOBS, query)
        assert response.status_code == 200
        return set(_row_ids(response))

    as_ids = lambda jobs: {str(j.pk) for j in jobs}  # noqa: E731
    assert ids(status="failed") == as_ids(failed_day2)
    assert ids(model="flux") == as_ids(flux_day2)
    assert ids(date_from="2026-01-06") == as_ids(failed_day2 + flux_day2)
    assert ids(date_to="2026-01-05") == as_ids(ok_day1)
    assert ids(date_from="2026-01-06", date_to="2026-01-06", model="sdxl") == as_ids(failed_day2)
    assert ids(status="succeeded", model="flux") == as_ids(flux_day2)
    # Filters survive pagination links and show as selected.
    body = client.get(JOBS, {"status": "failed"}).content.decode()
    assert '<option value="failed" selected>' in body
    # Bad filters: a message, ignored, no crash.
    response = client.get(
        JOBS, {"status": "exploded", "date_from": "2026-01-07", "date_to": "2026-01-01"}
    )
    assert response.status_code == 200
    assert "Some filters were not valid" in _text(response)
    assert "“To” is before “From”." in _text(response)
    response = client.get(JOBS, {"before": "garbage"})
    assert "That page link is not valid" in _text(response)
    assert len(_row_ids(response)) == 6


@pytest.mark.parametrize(
    "params", [{"date_to": "9999-12-31"}, {"date_from": "0001-01-01"}, {"date_from": "9999-12-31"}]
)
def test_dates_out_of_range_are_a_form_error_not_a_500(client, org, params):
    response = client.get(JOBS, params)
    assert response.status_code == 200
    assert "Use a date between 1970-01-01 and 2999-12-31." in _text(response)


def test_history_rows_show_credits_and_link_to_the_job(client, org, sdxl):
    queued = _submit(org)
    done = _submit(org, prompt="done")
    services.generation_run(job_id=done.pk)
    body = client.get(JOBS).content.decode()
    assert f'href="/generate/jobs/{queued.pk}/"' in body
    queued_row = re.search(rf'<tr id="job-{queued.pk}".*?</tr>', body, re.S).group(0)
    assert "held" in queued_row and "Queued" in queued_row
    done_row = re.search(rf'<tr id="job-{done.pk}".*?</tr>', body, re.S).group(0)
    assert "Succeeded" in done_row and re.search(r"5 <small[^>]*>charged</small>", done_row)


def test_history_empty_state(client):
    assert "No generations yet" in _text(client.get(JOBS))


# --- The first hour (issue 10 §4): seeds, readable errors, refusals, cancelled jobs ------------


def test_an_empty_seed_draws_a_random_one_shown_on_the_job_and_reusable(client, org, sdxl):
    seeds = set()
    for _ in range(2):
        response = _post(client, prompt="a cat", seed="")
        assert response.status_code == 302
    for job in Job.objects.filter(organization=org):
        seed = job.params["seed"]
        assert isinstance(seed, int) and 0 <= seed <= 2**32 - 1
        seeds.add(seed)
    assert len(seeds) == 2  # really drawn, not a constant 0
    job = Job.objects.filter(organization=org).latest("created_at")
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["seed"] == job.params["seed"]  # it ran with the recorded seed

    # The panel shows the seed (marked random) with a link that fills it in.
    page = client.get(GENERATE, {"model": "sdxl", "job": str(job.pk)})
    body = page.content.decode()
    seed_fact = re.search(r'data-testid="job-seed">(.*?)</dd>', body, re.S).group(1)
    assert str(job.params["seed"]) in seed_fact and "random" in seed_fact
    reuse = f"{GENERATE}?model=sdxl&amp;job={job.pk}&amp;params-seed={job.params['seed']}"
    assert reuse in seed_fact
    # The form after the submission keeps the prompt but leaves a random seed empty, so the
    # next press draws a new one…
    assert "\na cat</textarea>" in body
    assert not re.search(r'name="params-seed" value=', body)
    # …and the reuse link fills it in.
    page = client.get(html_lib.unescape(reuse))
    assert re.search(rf'name="params-seed" value="{job.params["seed"]}"', page.content.decode())
    # The job's page lists it with its params and links to run it again with it.
    detail = client.get(f"{JOBS}{job.pk}/").content.decode()
    assert f"params-seed={job.params['seed']}" in detail


def test_a_seed_typed_by_the_customer_is_kept_and_not_called_random(client, org, sdxl):
    assert _post(client, prompt="a cat", seed="42").status_code == 302
    job = Job.objects.get(organization=org)
    assert job.params == {"prompt": "a cat", "seed": 42}
    body = client.get(GENERATE, {"model": "sdxl", "job": str(job.pk)}).content.decode()
    seed_fact = re.search(r'data-testid="job-seed">(.*?)</dd>', body, re.S).group(1)
    assert "42" in seed_fact and "random" not in seed_fact
    assert re.search(r'name="params-seed" value="42"', body)  # kept for the next press


def test_errors_never_echo_a_huge_prompt_and_read_like_sentences(client, org, sdxl):
    prompt = "lighthouse " * 2000  # 22,000 characters
    response = _post(client, prompt=prompt, seed="-5")
    assert response.status_code == 400
    body = response.content.decode()
    errors = dict(re.findall(r'id="id_params-(\w+)_error">([^<]*)</small>', body))
    assert errors == {
        "prompt": "Prompt is too long (at most 4,000 characters).",
        "seed": "Seed must be 0 or more.",
    }
    # The prompt appears once: in its textarea (kept so it can be shortened), nowhere else.
    assert body.count("lighthouse") == 2000
    assert "less than the minimum" not in body and "is too long" not in body.replace(
        "Prompt is too long", ""
    )
    refusal = re.search(r'id="refusal".*?</div>', body, re.S).group(0)
    assert len(_text_of(refusal)) < 200
    _nothing_written(org)


def test_an_invalid_choice_is_refused_without_echoing_it(client):
    make_ai_model(
        "sdxl",
        params_schema={
            "type": "object",
            "properties": {"style": {"enum": ["anime", "photo"]}},
        },
    )
    response = _post(client, prompt="a cat", style="x" * 5000)
    assert response.status_code == 400
    body = response.content.decode()
    assert "xxxxxxxxxx" not in body
    assert re.search(r'id="id_params-style_error">Pick one of the choices.<', body)


def _text_of(fragment: str) -> str:
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


@pytest.mark.parametrize("htmx", [False, True])
def test_a_refused_second_submission_keeps_the_running_jobs_panel(sdxl, htmx):
    org = make_org(slug=f"one-at-a-time-{int(htmx)}", plan="free")  # one job at a time
    client = _login(Client(), org)
    assert _post(client, prompt="first").status_code == 302
    running = Job.objects.get(organization=org)
    Job.objects.filter(pk=running.pk).update(
        status=JobStatus.RUNNING, node="a100-sim-1", started_at=timezone.now()
    )
    page = client.get(GENERATE, {"model": "sdxl", "job": str(running.pk)})
    assert re.search(rf'name="job" value="{running.pk}"', page.content.decode())

    data = {
        "model": "sdxl",
        "form_token": str(uuid.uuid4()),
        "job": str(running.pk),
        "params-prompt": "second",
    }
    response = client.post(GENERATE, data, **(HX if htmx else {}))
    assert response.status_code == (200 if htmx else 429)
    body = response.content.decode()
    assert 'data-code="quota_exceeded"' in body and "Too many jobs at once" in body
    # The running job's panel is still there, still polling.
    panel = re.search(r'<section id="job-panel"[^>]*>', body).group(0)
    assert f'aria-label="Job {running.pk}"' in panel and 'data-status="running"' in panel
    assert "hx-trigger" in panel
    assert "Generating on a100-sim-1" in _text(response)
    assert Job.objects.filter(organization=org).count() == 1


def test_a_refusal_shows_no_panel_of_another_tenants_job(client, org, sdxl):
    foreign = _submit(make_org(slug="globex", plan="starter"))
    data = {
        "model": "sdxl",
        "form_token": str(uuid.uuid4()),
        "job": str(foreign.pk),
        "params-prompt": "",
    }
    response = client.post(GENERATE, data)
    assert response.status_code == 400
    assert str(foreign.pk) not in response.content.decode()


def _steps(body: str) -> list[tuple[str, str]]:
    steps = re.search(r'<ol class="job-steps".*?</ol>', body, re.S).group(0)
    return [
        (cls, _text_of(label))
        for cls, label in re.findall(r'<li class="([^"]*)"[^>]*>(.*?)</li>', steps, re.S)
    ]


def test_a_cancelled_job_never_ran_and_its_hold_reads_released_at_once(client, org, sdxl):
    job = _submit(org)
    # The job page's body, swapped in by htmx after the cancel: no reload.
    response = client.post(f"{JOBS}{job.pk}/cancel/", {"view": "detail"}, **HX)
    body = response.content.decode()
    assert _steps(body) == [
        ("done", "Queued"),
        ("skipped", "Running"),
        ("done final-cancelled", "Cancelled"),
    ]
    node = re.search(r'data-testid="job-node">(.*?)</dd>', body, re.S).group(1)
    assert _text_of(node) == "never ran"
    text = _text(response)
    assert f"one hold, {job.hold.key} (released)" in text and "(held)." not in text
    assert "5 held credits were released" in text
    # The panel of the generate page says the same.
    panel = client.get(f"{JOBS}{job.pk}/status/", **HX).content.decode()
    assert ("skipped", "Running") in _steps(panel) and "not yet" not in panel


def test_a_job_failed_in_the_queue_never_ran_but_one_failed_on_a_node_did(client, org, sdxl):
    from generations.services.execution import job_fail

    queued = _submit(org)
    job_fail(queued, code="no_node", message="No node.", customer_fault=False, now=timezone.now())
    body = client.get(f"{JOBS}{queued.pk}/status/", **HX).content.decode()
    assert _steps(body)[1] == ("skipped", "Running")
    ran = _submit(org, prompt="please [fail]")
    services.generation_run(job_id=ran.pk)
    body = client.get(f"{JOBS}{ran.pk}/status/", **HX).content.decode()
    assert _steps(body)[1] == ("done", "Running")


def test_dates_and_amounts_read_the_same_on_the_job_pages(client, org, sdxl):
    job = _submit(org)
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    from config.web.formats import format_datetime

    created = format_datetime(job.created_at)  # "2 Dec 2026, 09:53:33"
    assert re.fullmatch(r"\d{1,2} \w{3} \d{4}, \d\d:\d\d:\d\d", created)
    for url in (f"{GENERATE}?model=sdxl&job={job.pk}", f"{JOBS}{job.pk}/", JOBS):
        text = _text(client.get(url))
        assert created in text, url
    detail = _text(client.get(f"{JOBS}{job.pk}/"))
    assert "−5 (held)" in detail and "5.000" not in detail
