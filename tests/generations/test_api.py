"""Generations endpoints of API v1: /models/, /generations/ (submit, list, detail, cancel).

Shapes (decimals as strings), Idempotency-Key replay and conflict, problem+json refusals that
write nothing, quotas in the spec's order, tenant isolation, filters and cursor pagination."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from accounts import services as account_services
from accounts.models import Plan
from credits import ledger
from credits.models import CreditHold, EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import AIModel, Job, JobEvent, JobStatus
from tests.config.helpers import assert_problem, bearer
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]

MODELS = "/api/v1/models/"
GENERATIONS = "/api/v1/generations/"
JOB_FIELDS = {
    "id",
    "status",
    "model",
    "params",
    "credits_held",
    "credits_charged",
    "actual_units",
    "cached",
    "node",
    "created_at",
    "started_at",
    "finished_at",
    "result",
    "error",
}


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def sdxl():
    return make_ai_model("sdxl", credits="5")


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def acme_key(acme):
    return new_key(acme)


@pytest.fixture
def globex():
    return make_org(slug="globex", plan="studio")


def new_key(org) -> str:
    return account_services.api_key_create(organization=org, name="k", actor=None)[1]


def detail(job_id) -> str:
    return f"{GENERATIONS}{job_id}/"


def cancel_url(job_id) -> str:
    return f"{GENERATIONS}{job_id}/cancel/"


def submit(client, key=None, body=None, *, idempotency_key=None):
    body = {"model": "sdxl", "params": {"prompt": "a cat"}} if body is None else body
    headers = bearer(key) if key else {}
    if idempotency_key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return client.post(
        GENERATIONS, data=json.dumps(body), content_type="application/json", **headers
    )


def writes() -> tuple[int, int, int, int]:
    return (
        Job.objects.count(),
        JobEvent.objects.count(),
        CreditHold.objects.count(),
        LedgerEntry.objects.count(),
    )


def session(client, org):
    client.force_login(org.memberships.get().user)
    return client


# --- POST /generations/ -------------------------------------------------------------------------


def test_submit_accepts_the_job_with_202_and_holds_its_price(client, acme, acme_key, sdxl):
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "a cat", "seed": 7}})
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["status"] == "queued"
    assert body["model"] == "sdxl"
    assert body["params"] == {"prompt": "a cat", "seed": 7}
    assert body["credits_held"] == "5.000"
    assert body["credits_charged"] is None
    assert (body["cached"], body["node"], body["result"], body["error"]) == (False, "", None, None)
    assert body["created_at"] and body["started_at"] is None and body["finished_at"] is None
    assert response["Location"].endswith(detail(body["id"]))
    assert "Idempotent-Replayed" not in response
    job = Job.objects.get(pk=body["id"])
    assert (job.organization, job.api_key.organization, job.status) == (acme, acme, "queued")
    assert job.hold.status == HoldStatus.HELD
    assert account_of(acme).held == D(5)


def test_a_job_that_ran_shows_its_charge_result_node_and_timestamps(client, acme, acme_key, sdxl):
    job_id = submit(client, acme_key).json()["id"]
    assert services.generation_run(job_id=job_id) == "succeeded"
    body = client.get(detail(job_id), **bearer(acme_key)).json()
    assert body["status"] == "succeeded"
    assert (body["credits_held"], body["credits_charged"]) == ("5.000", "5.000")
    assert body["result"] and body["node"]
    assert body["started_at"] and body["finished_at"] >= body["started_at"]
    assert body["error"] is None
    assert account_of(acme).balance == D(10_000 - 5)


def test_a_failed_job_shows_its_error_code_and_message(client, acme_key, sdxl):
    job_id = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "boom [fail]"}})
    job_id = job_id.json()["id"]
    services.generation_run(job_id=job_id)
    body = client.get(detail(job_id), **bearer(acme_key)).json()
    assert body["status"] == "failed"
    assert body["credits_charged"] == "0.000"
    assert body["error"]["code"] == "gpu_failure"
    assert body["error"]["message"]


def test_idempotency_key_replay_returns_the_same_job_and_holds_once(client, acme, acme_key, sdxl):
    first = submit(client, acme_key, idempotency_key="req-1")
    assert first.status_code == 202
    before = writes()
    again = submit(client, acme_key, idempotency_key="req-1")
    assert again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert writes() == before
    assert account_of(acme).held == D(5)
    # Later replays show the job as it is now.
    services.generation_run(job_id=first.json()["id"])
    replay = submit(client, acme_key, idempotency_key="req-1").json()
    assert (replay["id"], replay["status"]) == (first.json()["id"], "succeeded")


def test_idempotency_key_with_a_different_body_is_a_409_and_writes_nothing(
    client, acme, acme_key, sdxl
):
    submit(client, acme_key, idempotency_key="req-1")
    before = writes()
    response = submit(
        client, acme_key, {"model": "sdxl", "params": {"prompt": "a dog"}}, idempotency_key="req-1"
    )
    assert_problem(response, status=409, code="idempotency_conflict")
    assert writes() == before
    assert account_of(acme).held == D(5)


def test_idempotency_keys_are_per_organization(client, acme_key, globex, sdxl):
    mine = submit(client, acme_key, idempotency_key="same").json()
    theirs = submit(client, new_key(globex), idempotency_key="same").json()
    assert mine["id"] != theirs["id"]
    assert Job.objects.get(pk=theirs["id"]).organization == globex


@pytest.mark.parametrize("key", ["k" * 256, "a\x00b", "a\x1bb"])
def test_an_idempotency_key_that_is_too_long_or_not_printable_is_a_400_naming_it(
    client, acme_key, sdxl, key
):
    before = writes()
    response = submit(client, acme_key, idempotency_key=key)
    body = assert_problem(response, status=400, code="validation_error")
    assert "Idempotency-Key" in body["errors"]
    assert writes() == before


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"model", "params"}),
        ({"params": {"prompt": "a cat"}}, {"model"}),
        ({"model": "sdxl"}, {"params"}),
        ({"model": "sdxl", "params": ["a cat"]}, {"params"}),
        ({"model": "sdxl", "params": "a cat"}, {"params"}),
        ({"model": "nope", "params": {"prompt": "a cat"}}, {"model"}),
        ({"model": "sdxl", "params": {}}, {"params.prompt"}),
        ({"model": "sdxl", "params": {"prompt": ""}}, {"params.prompt"}),
        ({"model": "sdxl", "params": {"prompt": "a cat", "seed": "x"}}, {"params.seed"}),
        ({"model": "sdxl", "params": {"prompt": "a cat", "seed": -1}}, {"params.seed"}),
        ({"model": "sdxl", "params": {"prompt": "a cat", "steps": 30}}, {"params.steps"}),
        (["sdxl"], {"non_field_errors"}),
    ],
)
def test_bad_bodies_are_a_400_naming_the_fields_and_hold_nothing(
    client, acme, acme_key, sdxl, body, fields
):
    before = writes()
    response = submit(client, acme_key, body)
    problem = assert_problem(response, status=400, code="validation_error")
    assert set(problem["errors"]) == fields, problem
    assert writes() == before
    assert account_of(acme).held == 0


def test_the_models_own_schema_is_enforced(client, acme_key):
    make_ai_model(
        "upscaler",
        params_schema={
            "type": "object",
            "properties": {"scale": {"type": "integer", "enum": [2, 4]}},
            "required": ["scale"],
        },
    )
    ok = submit(client, acme_key, {"model": "upscaler", "params": {"scale": 4, "seed": 1}})
    assert ok.status_code == 202
    bad = submit(client, acme_key, {"model": "upscaler", "params": {"scale": 3}})
    assert "params.scale" in assert_problem(bad, status=400, code="validation_error")["errors"]


def test_an_inactive_model_is_unknown(client, acme_key, sdxl):
    AIModel.objects.filter(pk=sdxl.pk).update(is_active=False)
    response = submit(client, acme_key)
    assert "model" in assert_problem(response, status=400, code="validation_error")["errors"]


def test_malformed_json_is_a_400(client, acme_key, sdxl):
    before = writes()
    response = client.post(
        GENERATIONS, data="{not json", content_type="application/json", **bearer(acme_key)
    )
    assert_problem(response, status=400, code="validation_error")
    assert writes() == before


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"model": "sdxl", "params": {"prompt": "a \\u0000 cat"}}', "NUL"),
        ('{"model": "sdxl", "params": {"prompt": "a cat", "x\\u0000": 1}}', "NUL"),
        ('{"model": "sdxl", "params": {"prompt": "a \\ud800 cat"}}', "surrogate"),
        ('{"model": "sdxl", "params": {"\\udfff": "a cat"}}', "surrogate"),
        (
            '{"model": "sdxl", "params": {"prompt": "a cat", "x": '
            + "[" * 1000
            + "]" * 1000
            + "}}",
            "Nested deeper",
        ),
        ("[" * 100_000, "Nested deeper"),
        ('{"model": "sdxl", "params": {"prompt": "a cat"}} trailing', "Not valid JSON"),
    ],
    ids=["nul", "nul-key", "surrogate", "surrogate-key", "deep", "100k-brackets", "trailing"],
)
def test_hostile_json_is_a_short_400_and_writes_nothing(client, acme, acme_key, sdxl, raw, message):
    before = writes()
    response = client.post(
        GENERATIONS, data=raw, content_type="application/json", **bearer(acme_key)
    )
    problem = assert_problem(response, status=400, code="validation_error")
    assert message in problem["detail"] and len(problem["detail"]) < 200
    assert writes() == before
    assert account_of(acme).held == 0


def test_a_body_over_the_upload_limit_is_a_413_problem_and_writes_nothing(
    client, acme_key, sdxl, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = writes()
    body = {"model": "sdxl", "params": {"prompt": "x" * 20_000}}
    response = submit(client, acme_key, body)
    problem = assert_problem(response, status=413, code="payload_too_large")
    assert "10,000 bytes" in problem["detail"]
    assert writes() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "sdxl", "params": {"prompt": "a cat"}, "priority": "high"}, "priority"),
        ({"model": "sdxl", "params": {"prompt": "a cat"}, "modle": "flux"}, "modle"),
    ],
)
def test_unknown_body_fields_are_a_400_naming_them(client, acme_key, sdxl, body, field):
    before = writes()
    problem = assert_problem(submit(client, acme_key, body), status=400, code="validation_error")
    assert field in problem["errors"] and field in problem["detail"]
    assert writes() == before


def test_insufficient_credits_is_a_402_and_writes_nothing(client, sdxl):
    org = make_org(slug="poor", plan="starter")  # 500 credits + 500 overage
    make_ai_model("big", credits="1000.001")
    key = new_key(org)
    before = writes()
    response = submit(client, key, {"model": "big", "params": {"prompt": "a cat"}})
    assert_problem(response, status=402, code="insufficient_credits")
    assert writes() == before
    assert account_of(org).held == 0


def test_a_free_plan_api_key_is_refused_with_403(client, sdxl):
    org = make_org(slug="freebie", plan="free")
    key = new_key(org)
    before = writes()
    response = submit(client, key)
    body = assert_problem(response, status=403, code="permission_denied")
    assert body["reason"] == "api_access"
    assert writes() == before


def test_free_plan_by_session_may_submit(client, sdxl):
    org = make_org(slug="freebie", plan="free")
    response = submit(session(client, org))
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.organization, job.api_key, job.created_by) == (
        org,
        None,
        org.memberships.get().user,
    )


def test_free_plan_concurrent_jobs_quota_is_a_429_with_its_reason(client, sdxl):
    org = make_org(slug="freebie", plan="free")  # 1 concurrent job
    session(client, org)
    assert submit(client).status_code == 202
    before = writes()
    body = assert_problem(submit(client), status=429, code="quota_exceeded")
    assert body["reason"] == "concurrent_jobs"
    assert writes() == before
    assert account_of(org).held == D(5)


def test_free_plan_daily_cap_is_a_429_with_its_reason(client, sdxl):
    org = make_org(slug="freebie", plan="free")  # 20 generations a day
    account = account_of(org)
    for i in range(20):
        ledger.hold_capture(hold=ledger.hold_create(account=account, amount="1", key=f"done-{i}"))
    session(client, org)
    before = writes()
    body = assert_problem(submit(client), status=429, code="quota_exceeded")
    assert body["reason"] == "daily_generation_cap"
    assert writes() == before


def test_daily_cap_is_checked_before_concurrent_jobs(client, sdxl):
    org = make_org(slug="freebie", plan="free")
    account = account_of(org)
    for i in range(19):
        ledger.hold_capture(hold=ledger.hold_create(account=account, amount="1", key=f"done-{i}"))
    ledger.hold_create(account=account, amount="1", key="open")  # 20th today, and concurrent
    body = assert_problem(submit(session(client, org)), status=429, code="quota_exceeded")
    assert body["reason"] == "daily_generation_cap"


def test_rate_limit_counts_each_request_once(client, acme, acme_key, sdxl):
    Plan.objects.filter(slug="studio").update(api_rate_limit_per_min=3)
    for i in range(3):
        response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": f"cat {i}"}})
        assert response.status_code == 202, (i, response.content)
    before = writes()
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "cat 3"}})
    body = assert_problem(response, status=429, code="rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert (body["limit"], body["limit_value"]) == ("rate_limit", 3)
    assert writes() == before
    assert Job.objects.filter(organization=acme).count() == 3


def test_rate_limit_comes_before_the_plan_quotas(client, acme_key, sdxl):
    Plan.objects.filter(slug="studio").update(api_rate_limit_per_min=1, max_concurrent_jobs=1)
    assert submit(client, acme_key).status_code == 202
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "again"}})
    assert_problem(response, status=429, code="rate_limited")


def test_free_tier_is_refused_with_503_when_the_queue_is_saturated(
    client, settings, acme_key, sdxl
):
    settings.GENERATIONS_FREE_TIER_MAX_QUEUED = 1
    settings.GENERATIONS_SERVER_BUSY_RETRY_AFTER_S = 17
    assert submit(client, acme_key).status_code == 202  # a paying customer fills the queue
    org = make_org(slug="freebie", plan="free")
    api = client.__class__()
    before = writes()
    response = submit(session(api, org))
    assert_problem(response, status=503, code="server_busy")
    assert response["Retry-After"] == "17"
    assert writes() == before
    assert account_of(org).held == 0
    # Paid tiers are still accepted.
    second = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "more"}})
    assert second.status_code == 202


def test_anonymous_callers_get_401(client, sdxl):
    for response in (
        client.get(MODELS),
        client.get(GENERATIONS),
        submit(client),
        client.get(detail("00000000-0000-0000-0000-000000000000")),
        client.post(cancel_url("00000000-0000-0000-0000-000000000000")),
    ):
        assert_problem(response, status=401, code="authentication_failed")
    assert writes() == (0, 0, 0, 0)


# --- GET /generations/{id}/ and tenant isolation -----------------------------------------------


@pytest.fixture
def globex_job(globex, sdxl):
    job, _ = services.generation_submit(
        organization=globex, model_slug="sdxl", params={"prompt": "secret"}
    )
    return job


def test_another_tenants_job_is_404_on_detail_and_cancel_and_stays_untouched(
    client, acme_key, globex, globex_job
):
    body = assert_problem(
        client.get(detail(globex_job.pk), **bearer(acme_key)), status=404, code="not_found"
    )
    assert "secret" not in json.dumps(body)
    before = writes()
    assert_problem(
        client.post(cancel_url(globex_job.pk), **bearer(acme_key)), status=404, code="not_found"
    )
    assert writes() == before
    globex_job.refresh_from_db()
    assert globex_job.status == JobStatus.QUEUED
    assert account_of(globex).held == D(5)


def test_another_tenants_jobs_are_never_listed(client, acme_key, globex_job):
    response = client.get(GENERATIONS, **bearer(acme_key))
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "0b9c6f1e-3f5a-4a57-9f51-2f0c3b7d9a1"])
def test_malformed_ids_are_404(client, acme_key, job_id):
    assert_problem(client.get(detail(job_id), **bearer(acme_key)), status=404, code="not_found")
    assert_problem(
        client.post(cancel_url(job_id), **bearer(acme_key)), status=404, code="not_found"
    )


def test_session_sees_its_active_organizations_job(client, acme, sdxl):
    job, _ = services.generation_submit(
        organization=acme, model_slug="sdxl", params={"prompt": "x"}
    )
    response = session(client, acme).get(detail(job.pk))
    assert response.status_code == 200
    assert response.json()["id"] == str(job.pk)


# --- GET /generations/ --------------------------------------------------------------------------


@pytest.fixture
def history(acme, sdxl):
    """Five acme jobs, oldest first: flux succeeded, sdxl succeeded, sdxl failed, sdxl queued,
    flux queued."""
    make_ai_model("flux", credits="2")
    jobs = []
    for model, prompt, run in [
        ("flux", "one", True),
        ("sdxl", "two", True),
        ("sdxl", "three [fail]", True),
        ("sdxl", "four", False),
        ("flux", "five", False),
    ]:
        job, _ = services.generation_submit(
            organization=acme, model_slug=model, params={"prompt": prompt}
        )
        if run:
            services.generation_run(job_id=job.pk)
        jobs.append(job)
    return jobs


def test_list_is_newest_first_with_the_job_shape(client, acme_key, history):
    body = client.get(GENERATIONS, **bearer(acme_key)).json()
    assert set(body) >= {"next", "previous", "results"}
    assert [r["id"] for r in body["results"]] == [str(j.pk) for j in reversed(history)]
    assert all(set(r) == JOB_FIELDS for r in body["results"])
    assert [r["status"] for r in body["results"]] == [
        "queued",
        "queued",
        "failed",
        "succeeded",
        "succeeded",
    ]


def test_list_cursor_pagination_walks_every_job_once_in_order(client, acme_key, history):
    seen, url, pages = [], f"{GENERATIONS}?page_size=2", 0
    while url:
        body = client.get(url, **bearer(acme_key)).json()
        assert len(body["results"]) <= 2
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3
    assert seen == [str(j.pk) for j in reversed(history)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=succeeded", [1, 0]),
        ("status=queued", [4, 3]),
        ("status=failed", [2]),
        ("status=cancelled", []),
        ("model=flux", [4, 0]),
        ("model=sdxl&status=succeeded", [1]),
        ("model=unknown", []),
    ],
)
def test_list_filters_by_status_and_model(client, acme_key, history, query, expected):
    body = client.get(f"{GENERATIONS}?{query}", **bearer(acme_key)).json()
    assert [r["id"] for r in body["results"]] == [str(history[i].pk) for i in expected]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("cursor=garbage", "cursor"),
        ("status=", "status"),
        ("model=", "model"),
        ("page_size=x", "page_size"),
        ("page_size=-1", "page_size"),
        ("page_size=501", "page_size"),
    ],
)
def test_list_bad_query_parameters_are_a_400_naming_them(client, acme_key, query, field):
    response = client.get(f"{GENERATIONS}?{query}", **bearer(acme_key))
    assert field in assert_problem(response, status=400, code="validation_error")["errors"]


# --- POST /generations/{id}/cancel/ -------------------------------------------------------------


def test_cancel_refuses_unknown_body_fields_and_accepts_an_empty_object(client, acme_key, sdxl):
    job_id = submit(client, acme_key).json()["id"]
    refused = client.post(
        cancel_url(job_id),
        data=json.dumps({"reason": "changed my mind"}),
        content_type="application/json",
        **bearer(acme_key),
    )
    assert "reason" in assert_problem(refused, status=400, code="validation_error")["errors"]
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    ok = client.post(
        cancel_url(job_id), data="{}", content_type="application/json", **bearer(acme_key)
    )
    assert ok.status_code == 200 and ok.json()["status"] == "cancelled"


def test_page_size_within_bounds_is_honoured(client, acme_key, history):
    body = client.get(f"{GENERATIONS}?page_size=2", **bearer(acme_key)).json()
    assert len(body["results"]) == 2 and body["next"]


def test_cancel_releases_the_hold_and_is_idempotent(client, acme, acme_key, sdxl):
    job_id = submit(client, acme_key).json()["id"]
    assert account_of(acme).held == D(5)
    response = client.post(cancel_url(job_id), **bearer(acme_key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["credits_charged"], body["error"]) == ("cancelled", "0.000", None)
    assert body["finished_at"]
    account = account_of(acme)
    assert (account.held, account.balance) == (0, D(10_000))
    hold = Job.objects.get(pk=job_id).hold
    assert hold.status == HoldStatus.RELEASED
    assert LedgerEntry.objects.filter(hold=hold, kind=EntryKind.RELEASE).count() == 1
    again = client.post(cancel_url(job_id), **bearer(acme_key))
    assert again.status_code == 200
    assert again.json() == body
    assert LedgerEntry.objects.filter(hold=hold, kind=EntryKind.RELEASE).count() == 1
    assert services.generation_run(job_id=job_id) == "already cancelled"


@pytest.mark.parametrize("state", ["running", "succeeded", "failed"])
def test_only_queued_jobs_can_be_cancelled(client, acme, acme_key, sdxl, state):
    prompt = "boom [fail]" if state == "failed" else "a cat"
    job_id = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": prompt}}).json()["id"]
    if state == "running":
        Job.objects.filter(pk=job_id).update(status=JobStatus.RUNNING)
    else:
        services.generation_run(job_id=job_id)
    before = writes(), account_of(acme).held
    response = client.post(cancel_url(job_id), **bearer(acme_key))
    body = assert_problem(response, status=400, code="validation_error")
    assert state in body["detail"]
    assert "status" in body["errors"]
    assert (writes(), account_of(acme).held) == before
    assert Job.objects.get(pk=job_id).status == state


# --- GET /models/ -------------------------------------------------------------------------------


def test_models_lists_active_priced_models_with_current_price_and_schema(client, acme_key, sdxl):
    make_ai_model("flux", credits="2.5", description="Fast images")
    make_ai_model("retired", is_active=False)
    AIModel.objects.create(slug="unpriced", name="Unpriced", pool=sdxl.pool)
    response = client.get(MODELS, **bearer(acme_key))
    assert response.status_code == 200
    body = response.json()
    assert [m["slug"] for m in body] == ["flux", "sdxl"]
    flux = body[0]
    assert set(flux) == {"slug", "name", "description", "pool", "credits", "params_schema"}
    assert (flux["name"], flux["pool"], flux["credits"], flux["description"]) == (
        "FLUX",
        "a100",
        "2.500",
        "Fast images",
    )
    assert {"prompt", "seed"} <= set(flux["params_schema"]["properties"])
    assert flux["params_schema"]["properties"]["seed"]["type"] == "integer"


def test_the_model_list_costs_the_same_queries_for_one_model_or_many(
    client, acme_key, sdxl, django_assert_num_queries
):
    """Prices come with the models in one query: no query per model (N+1)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(MODELS, **bearer(acme_key))  # the key's first use writes its last_used_at
    with CaptureQueriesContext(connection) as one:
        assert len(client.get(MODELS, **bearer(acme_key)).json()) == 1
    for i in range(6):
        model = make_ai_model(f"extra-{i}", pool=sdxl.pool, credits="1")
        services.rate_set(model=model, credits="2", reason="repriced", actor=None)
    with django_assert_num_queries(len(one.captured_queries)):
        assert len(client.get(MODELS, **bearer(acme_key)).json()) == 7
    # ...and each shows its price in force (the newest version), as a submission would pin.
    body = {m["slug"]: m["credits"] for m in client.get(MODELS, **bearer(acme_key)).json()}
    assert body["extra-0"] == "2.000" and body["sdxl"] == "5.000"


def test_models_always_document_prompt_and_seed(client, acme_key):
    make_ai_model(
        "upscaler",
        params_schema={"type": "object", "properties": {"scale": {"type": "integer"}}},
    )
    schema = client.get(MODELS, **bearer(acme_key)).json()[0]["params_schema"]
    assert set(schema["properties"]) == {"scale", "prompt", "seed"}


def test_models_show_the_current_price_after_a_rate_change(client, acme_key, sdxl):
    services.rate_set(model=sdxl, credits="7.5", reason="GPU prices up", actor=None)
    body = client.get(MODELS, **bearer(acme_key)).json()
    assert body[0]["credits"] == "7.500"
    # ...and that is the price a new job holds.
    assert submit(client, acme_key).json()["credits_held"] == "7.500"


def test_free_plan_members_see_the_models_in_the_browser(client, sdxl):
    org = make_org(slug="freebie", plan="free")
    response = session(client, org).get(MODELS)
    assert response.status_code == 200
    assert response.json()[0]["slug"] == "sdxl"


# --- Seeds and readable errors (issue 10 §4) ----------------------------------------------------


def test_a_submission_without_seed_gets_a_random_one_recorded_in_its_params(client, acme_key, sdxl):
    body = {"model": "sdxl", "params": {"prompt": "a cat"}}
    jobs = [submit(client, acme_key, body).json() for _ in range(3)]
    seeds = [job["params"]["seed"] for job in jobs]
    assert all(isinstance(s, int) and 0 <= s <= 2**32 - 1 for s in seeds)
    assert len(set(seeds)) == 3  # drawn (secrets), not a constant
    assert all(job["params"]["prompt"] == "a cat" for job in jobs)
    services.generation_run(job_id=jobs[0]["id"])
    assert (
        client.get(detail(jobs[0]["id"]), **bearer(acme_key)).json()["result"]["seed"] == (seeds[0])
    )
    # A seed that is given is kept as it is.
    given = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "a", "seed": 0}})
    assert given.json()["params"] == {"prompt": "a", "seed": 0}


def test_a_seed_is_drawn_within_the_models_own_bounds(client, acme_key):
    make_ai_model(
        "tiny-seed",
        params_schema={
            "type": "object",
            "properties": {"seed": {"type": "integer", "minimum": 5, "maximum": 6}},
        },
    )
    for _ in range(5):
        job = submit(client, acme_key, {"model": "tiny-seed", "params": {"prompt": "a"}}).json()
        assert job["params"]["seed"] in (5, 6)


def test_replaying_a_seedless_request_returns_the_same_job_not_a_409(client, acme, acme_key, sdxl):
    body = {"model": "sdxl", "params": {"prompt": "a cat"}}
    first = submit(client, acme_key, body, idempotency_key="seedless")
    assert first.status_code == 202
    before = writes()
    again = submit(client, acme_key, body, idempotency_key="seedless")
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["params"]["seed"] == first.json()["params"]["seed"]
    assert writes() == before
    # The drawn seed is not part of what was sent: sending it explicitly is another body.
    seeded = {
        "model": "sdxl",
        "params": {"prompt": "a cat", "seed": first.json()["params"]["seed"]},
    }
    conflict = submit(client, acme_key, seeded, idempotency_key="seedless")
    assert_problem(conflict, status=409, code="idempotency_conflict")
    assert account_of(acme).held == D(5)


def test_the_result_cache_never_serves_a_seedless_request(client, acme_key, sdxl, settings):
    settings.GENERATIONS_RESULT_CACHE_TTL_S = 3600
    body = {"model": "sdxl", "params": {"prompt": "a cat"}}
    first = submit(client, acme_key, body).json()
    services.generation_run(job_id=first["id"])
    second = submit(client, acme_key, body).json()
    assert second["cached"] is False  # a new random draw, run again
    # Asking for the first job's seed explicitly is an identical request: cached.
    seed = first["params"]["seed"]
    third = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "a cat", "seed": seed}})
    assert third.json()["cached"] is True


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"prompt": "x" * 20_000},
            "params.prompt",
            "Prompt is too long (at most 4,000 characters).",
        ),
        ({"prompt": "a cat", "seed": -5}, "params.seed", "Seed must be 0 or more."),
        ({"prompt": "a cat", "seed": 2**40}, "params.seed", "Seed must be 4,294,967,295 or less."),
        ({"prompt": "a cat", "seed": "x" * 5000}, "params.seed", "Seed must be a whole number."),
        ({"prompt": ""}, "params.prompt", "Prompt must not be empty."),
        ({"seed": 1}, "params.prompt", "Prompt is required."),
        ({"prompt": 5}, "params.prompt", "Prompt must be text."),
    ],
)
def test_validation_errors_are_sentences_that_never_echo_the_value(
    client, acme_key, params, field, message
):
    make_ai_model("sdxl", credits="5")
    response = submit(client, acme_key, {"model": "sdxl", "params": params})
    problem = assert_problem(response, status=400, code="validation_error")
    assert problem["detail"] == message
    assert problem["errors"] == {field: [message]}
    assert "xxxxxxxxxx" not in response.content.decode()
    assert len(response.content) < 1000


def test_an_unknown_params_key_is_named_truncated(client, acme_key, sdxl):
    name = "k" * 10_000
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "a", name: 1}})
    problem = assert_problem(response, status=400, code="validation_error")
    assert problem["detail"].startswith("Unknown parameter “kkkk") and "…" in problem["detail"]
    assert len(response.content) < 1000


def test_several_problems_are_counted_in_the_detail(client, acme_key, sdxl):
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "", "seed": -1}})
    problem = assert_problem(response, status=400, code="validation_error")
    assert problem["detail"] == "Prompt must not be empty. (and 1 more problem)"
    assert problem["errors"] == {
        "params.prompt": ["Prompt must not be empty."],
        "params.seed": ["Seed must be 0 or more."],
    }


def test_serializer_errors_never_echo_a_huge_name_or_value(client, acme_key, sdxl):
    name = "z" * 10_000
    response = submit(client, acme_key, {"model": "sdxl", "params": {"prompt": "a"}, name: 1})
    problem = assert_problem(response, status=400, code="validation_error")
    (field,) = problem["errors"]
    assert field.startswith("zzzz") and field.endswith("…") and len(field) <= 60
    assert len(response.content) < 1000
    response = client.get(f"{GENERATIONS}?status={'q' * 10_000}", **bearer(acme_key))
    assert_problem(response, status=400, code="validation_error")
    assert len(response.content) < 1000
