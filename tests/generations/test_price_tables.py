"""Prices that follow the request (issue 15): a declarative price table on a price version, the
quote (`POST /api/v1/generations/quote/`), the hold of the quoted price, and the capture of the
actual units below the hold with the rest released — on the real ledger."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from django.urls import reverse

from accounts import services as account_services
from accounts.models import AuditEvent, User
from credits.models import CreditHold, EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import CreditRate, Job, JobEvent
from generations.price_tables import price_table_errors, table_price
from tests.config.helpers import assert_problem, bearer
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]

QUOTE = "/api/v1/generations/quote/"
GENERATIONS = "/api/v1/generations/"

VIDEO_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
        "duration_s": {"type": "number", "minimum": 1, "maximum": 60, "default": 4},
        "steps": {"type": "integer", "minimum": 1, "maximum": 200, "default": 30},
        "width": {"type": "integer", "minimum": 64, "maximum": 4096, "default": 1024},
        "height": {"type": "integer", "minimum": 64, "maximum": 4096, "default": 1024},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 8, "default": 1},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}
TABLE = {
    "base": "2",
    "per": [
        {"param": "duration_s", "credits": "1.5", "unit": "second"},
        {"param": "steps", "credits": "0.01"},
        {"param": "width*height", "per_megapixel": "0.5"},
        {"param": "batch_size", "multiplier": True},
    ],
}


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def video():
    model = make_ai_model(
        "clip",
        credits="5",
        params_schema=VIDEO_SCHEMA,
        backend_config={"mean_s": 0.01, "actual_units": {"duration_s": 0.5}},
    )
    services.rate_set(model=model, price_table=TABLE, reason="per second", actor=None)
    return model


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def acme_key(acme):
    return account_services.api_key_create(organization=acme, name="k", actor=None)[1]


def post(client, url, key, body):
    return client.post(url, data=json.dumps(body), content_type="application/json", **bearer(key))


def writes():
    return (
        Job.objects.count(),
        JobEvent.objects.count(),
        CreditHold.objects.count(),
        LedgerEntry.objects.count(),
    )


# --- The arithmetic -----------------------------------------------------------------------------


def test_a_table_price_is_exact_and_rounded_once_half_up():
    params = {"duration_s": 6, "steps": 30, "width": 1024, "height": 768, "batch_size": 2}
    price = table_price(TABLE, params)
    # (2 + 6×1.5 + 30×0.01 + 0.786432 MP×0.5) × 2 = (2 + 9 + 0.3 + 0.393216) × 2 = 23.386432
    assert price.exact == D("23.386432")
    assert price.credits == D("23.386")
    assert (price.unit, price.units) == ("second", D(12))  # 6 s × 2 clips
    half = {"per": [{"param": "steps", "credits": "0.0005"}]}
    assert table_price(half, {"steps": 5}).credits == D("0.003")  # 0.0025: half up, not even
    assert table_price(half, {"steps": 0}).credits == D("0.001")  # never below 0.001
    assert table_price({**half, "min": "1"}, {"steps": 5}).credits == D(1)


def test_missing_params_take_the_schema_default_and_the_reference_price_uses_them(video):
    rate = CreditRate.objects.filter(model=video).latest()
    # base 2 + 4 s × 1.5 + 30 × 0.01 + 1.048576 MP × 0.5 = 8.824288 → 8.824
    assert rate.credits == D("8.824")
    assert rate.price_table == TABLE


@pytest.mark.parametrize(
    "table",
    [
        None,
        [],
        "2",
        {},
        {"per": []},
        {"per": [{"param": "steps"}]},
        {"per": [{"param": "steps", "credits": 0.5}]},  # a float: not exact
        {"per": [{"param": "steps", "credits": "-1"}]},
        {"per": [{"param": "steps", "credits": "NaN"}]},
        {"per": [{"param": "steps", "credits": "1e400"}]},
        {"per": [{"param": "steps", "credits": "0.0000001"}]},
        {"per": [{"param": "steps", "credits": "1", "multiplier": True}]},
        {"per": [{"param": "steps", "multiplier": "yes"}]},
        {"per": [{"param": "a*b*c*d", "credits": "1"}]},
        {"per": [{"param": "x\x00", "credits": "1"}]},
        {"per": [{"param": "steps", "credits": "1", "code": "import os"}]},
        {"per": [{"param": "steps", "credits": "1"}], "unit": "duration_s"},
        {"base": "1.0001", "per": [{"param": "steps", "credits": "1"}]},
        {"per": [{"param": "steps", "credits": "1"}] * 11},
    ],
)
def test_bad_price_tables_are_refused_with_reasons(table):
    errors = price_table_errors(table)
    assert errors and all(isinstance(e, str) and len(e) < 200 for e in errors)


def test_a_table_must_price_numbers_of_the_models_schema(video):
    bad = {"per": [{"param": "prompt", "credits": "1"}, {"param": "fps", "credits": "1"}]}
    errors = price_table_errors(bad, params_schema=VIDEO_SCHEMA)
    assert any("“prompt” must be a number" in e for e in errors)
    assert any("has no “fps”" in e for e in errors)
    assert price_table_errors(TABLE, params_schema=VIDEO_SCHEMA) == []


# --- Admin --------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser(email="root@example.com", password="pw-root-123")
    client.force_login(user)
    return client


def test_the_admin_refuses_a_bad_price_table_with_form_errors(staff_client, video):
    before = CreditRate.objects.count()
    response = staff_client.post(
        reverse("admin:generations_creditrate_add"),
        {
            "model": video.pk,
            "credits": "",
            "price_table": json.dumps({"per": [{"param": "fps", "credits": "x"}]}),
            "reason": "try",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "price_table" in errors
    assert CreditRate.objects.count() == before
    response = staff_client.post(
        reverse("admin:generations_creditrate_add"),
        {"model": video.pk, "credits": "", "price_table": "{not json", "reason": "try"},
    )
    assert (
        response.status_code == 200 and "price_table" in response.context["adminform"].form.errors
    )
    assert CreditRate.objects.count() == before


def test_the_admin_adds_a_price_table_as_a_new_version_with_who_and_why(staff_client, video):
    table = {"base": "1", "per": [{"param": "duration_s", "credits": "2"}]}
    response = staff_client.post(
        reverse("admin:generations_creditrate_add"),
        {"model": video.pk, "credits": "", "price_table": json.dumps(table), "reason": "cheaper"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rate = CreditRate.objects.filter(model=video).latest()
    assert (rate.price_table, rate.credits, rate.reason) == (table, D(9), "cheaper")
    assert rate.set_by.email == "root@example.com"
    event = AuditEvent.objects.filter(action="credit_rate.set").latest("id")
    assert event.data["price_table"] == table


# --- Quote = hold = price; actual units below the hold -----------------------------------------


def test_the_quote_is_the_price_the_submission_holds_and_writes_nothing(
    client, acme, acme_key, video
):
    body = {"model": "clip", "params": {"prompt": "waves", "duration_s": 6, "batch_size": 2}}
    before = writes()
    response = post(client, QUOTE, acme_key, body)
    assert response.status_code == 200, response.content
    quote = response.json()
    assert writes() == before
    # (2 + 9 + 0.3 + 0.524288) × 2 = 23.648576 → 23.649
    assert quote["credits"] == "23.649"
    assert quote["model"] == "clip" and quote["follows_request"] is True
    assert (quote["unit"], quote["units"]) == ("second", "12")
    assert quote["rate_version"] == CreditRate.objects.filter(model=video).latest().pk
    assert [line["kind"] for line in quote["breakdown"]] == [
        "base",
        "credits",
        "credits",
        "per_megapixel",
        "multiplier",
    ]
    job = Job.objects.get(pk=post(client, GENERATIONS, acme_key, body).json()["id"])
    assert job.credits_held == D(quote["credits"]) == job.hold.amount
    assert job.rate.pk == quote["rate_version"]


def test_a_flat_model_quotes_its_flat_price(client, acme_key):
    make_ai_model("sdxl", credits="5")
    quote = post(client, QUOTE, acme_key, {"model": "sdxl", "params": {"prompt": "a"}}).json()
    assert quote["credits"] == "5.000" and quote["follows_request"] is False
    assert quote["breakdown"] == [{"param": None, "kind": "flat", "credits": "5.000"}]


def test_actual_units_below_the_hold_are_charged_and_the_rest_released(acme, video):
    account = account_of(acme)
    balance = account.balance
    job, _ = services.generation_submit(
        organization=acme, model_slug="clip", params={"prompt": "waves", "duration_s": 6}
    )
    # 2 + 6×1.5 + 0.3 + 0.524288 = 11.824288 → 11.824 held
    assert job.credits_held == D("11.824")
    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    # The GPU made 3 s (the simulator's `actual_units`): 2 + 4.5 + 0.3 + 0.524288 → 7.324
    assert job.actual_units == {"duration_s": 3}
    assert job.credits_charged == D("7.324")
    hold = CreditHold.objects.get(pk=job.hold_id)
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("7.324"))
    kinds = list(
        LedgerEntry.objects.filter(hold=hold).order_by("sequence").values_list("kind", "amount")
    )
    assert kinds == [
        (EntryKind.HOLD, D("11.824")),
        (EntryKind.RELEASE, D("4.500")),
        (EntryKind.CAPTURE, D("7.324")),
    ]
    account.refresh_from_db()
    assert (account.balance, account.held) == (balance - D("7.324"), D(0))
    assert "of 11.824 held" in job.events.latest("at").message
    # Exactly once: a redelivery changes nothing.
    assert services.generation_run(job_id=job.pk) == "already succeeded"
    account.refresh_from_db()
    assert account.balance == balance - D("7.324")


def test_actual_units_above_the_hold_are_capped_at_the_hold(acme, video):
    video.backend_config = {"mean_s": 0.01, "actual_units": {"duration_s": 2}}
    video.save()
    job, _ = services.generation_submit(
        organization=acme, model_slug="clip", params={"prompt": "waves", "duration_s": 6}
    )
    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.actual_units == {"duration_s": 12}
    assert job.credits_charged == job.credits_held == D("11.824")


def test_the_quote_refuses_exactly_like_a_submission(client, acme_key, video):
    cases = [
        {"model": "nope", "params": {"prompt": "a"}},
        {"model": "clip", "params": {"prompt": "a", "duration_s": -1}},
        {"model": "clip", "params": {"prompt": "a", "fps": 3}},
        {"model": "clip", "params": {"prompt": "a", "duration_s": 1e308}},
        {"model": "clip", "params": {"prompt": "a\x00b", "steps": "many"}},
        {"model": "clip\x00", "params": {"prompt": "a"}},
        {"model": "clip", "params": []},
        {"model": "clip"},
    ]
    before = writes()
    for body in cases:
        quoted = post(client, QUOTE, acme_key, body)
        submitted = post(client, GENERATIONS, acme_key, body)
        problem = assert_problem(quoted, status=400, code="validation_error")
        same = assert_problem(submitted, status=400, code="validation_error")
        assert problem.pop("instance") == QUOTE and same.pop("instance") == GENERATIONS
        assert problem == same, body
    assert writes() == before


def test_a_quote_needs_authentication(client, video):
    response = client.post(
        QUOTE,
        data=json.dumps({"model": "clip", "params": {"prompt": "a"}}),
        content_type="application/json",
    )
    assert response.status_code in (401, 403)


def test_a_huge_but_valid_request_is_refused_when_its_price_is_too_large(client, acme_key):
    schema = {
        **VIDEO_SCHEMA,
        "properties": {**VIDEO_SCHEMA["properties"], "steps": {"type": "integer"}},
    }
    model = make_ai_model("big", params_schema=schema)
    services.rate_set(model=model, price_table=TABLE, reason="t", actor=None)
    before = writes()
    body = {"model": "big", "params": {"prompt": "a", "steps": 10**30}}
    assert_problem(post(client, QUOTE, acme_key, body), status=400, code="validation_error")
    assert_problem(post(client, GENERATIONS, acme_key, body), status=400, code="validation_error")
    assert writes() == before


# --- The generate page --------------------------------------------------------------------------


def test_the_generate_page_shows_from_prices_and_the_released_rest(client, acme, video):
    client.force_login(acme.memberships.get().user)
    client.get(reverse("dashboard"))  # sets the active organization
    page = client.get("/generate/?model=clip").content.decode()
    assert "from <strong>8.824</strong>" in page
    assert 'data-testid="price-follows-params"' in page
    job, _ = services.generation_submit(
        organization=acme, model_slug="clip", params={"prompt": "waves", "duration_s": 6}
    )
    services.generation_run(job_id=job.pk)
    card = client.get(f"/generate/?job={job.pk}").content.decode()
    assert '7.324 <small class="muted">for what was produced; 4.5 of the hold released' in card
