"""Scenario planner API (/api/v1/planning/scenarios/…): staff only (anonymous 401, non-staff
403, API keys 403 — never data); evaluate without saving; save, list, retrieve; bad inputs are
a 400 problem+json and write nothing. The worked example of docs/planning.md through the API
(fixed costs per generation as overrides), and measured costs from the spec §3 example."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest
from django.core.management import call_command

from accounts import services as account_services
from accounts.models import AuditEvent
from infra_costs.allocation import unit_cost_report
from planning.models import Scenario
from tests.config.helpers import assert_problem, bearer
from tests.factories import UserFactory, make_ai_model, make_org, make_pool
from tests.infra_costs.conftest import DATA
from tests.planning.test_scenarios_calculation import WORKED_EXAMPLE

pytestmark = pytest.mark.django_db

LIST = "/api/v1/planning/scenarios/"
EVALUATE = "/api/v1/planning/scenarios/evaluate/"

EXAMPLE = {**WORKED_EXAMPLE, "cost_overrides": {"image-fast": "0.002", "video-hd": "0.05"}}


@pytest.fixture
def models_():
    pool = make_pool()
    make_ai_model("image-fast", pool=pool)
    make_ai_model("video-hd", pool=pool)


@pytest.fixture
def staff(api_client, models_):
    user = UserFactory(is_staff=True)
    api_client.force_login(user)
    api_client.user = user
    return api_client


def _post(client, url, body, **kwargs):
    return client.post(url, data=json.dumps(body), content_type="application/json", **kwargs)


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", LIST), ("post", LIST), ("post", EVALUATE), ("get", f"{LIST}1/")],
)
def test_staff_only_never_data(api_client, models_, method, url):
    scenario = Scenario.objects.create(name="secret", inputs=EXAMPLE)
    url = url.replace("/1/", f"/{scenario.pk}/")

    def call(**kwargs):
        if method == "get":
            return api_client.get(url, **kwargs)
        return _post(api_client, url, {"name": "x", "inputs": EXAMPLE}, **kwargs)

    assert_problem(call(), status=401, code="authentication_failed")
    member = UserFactory()
    make_org(slug="acme", owner=member)
    api_client.force_login(member)
    body = assert_problem(call(), status=403, code="permission_denied")
    assert "secret" not in json.dumps(body)
    api_client.logout()
    _key, raw = account_services.api_key_create(
        organization=make_org(slug="keyed", plan="starter"), name="k", actor=None
    )
    assert_problem(call(**bearer(raw)), status=403, code="permission_denied")
    assert Scenario.objects.count() == 1


def test_evaluate_reproduces_the_worked_example_and_saves_nothing(staff):
    response = _post(staff, EVALUATE, EXAMPLE)
    assert response.status_code == 200, response.content
    out = response.json()
    assert out["totals"]["gpu_cost_usd"] == "3480.000000"
    assert out["totals"]["total_cost_usd"] == "3980.000000"
    assert out["totals"]["revenue_usd"] == "12000.000000"
    assert out["totals"]["gross_margin_usd"] == "8020.000000"
    assert out["totals"]["gross_margin_fraction"] == "0.668333"
    assert out["totals"]["break_even_mau"] == 587
    assert out["totals"]["break_even_paid_users"] == 30
    assert [m["cost_source"] for m in out["models"]] == ["override", "override"]
    assert len(out["sensitivity"]) == 6
    assert Scenario.objects.count() == 0


def test_measured_costs_come_from_the_unit_cost_report(staff):
    for kind in ("pools", "uptime", "jobs"):  # the spec §3 worked example
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    inputs = {
        "mau": 100,
        "generations_per_user": "1",
        "model_mix": {"model-a": "50", "model-b": "50"},
        "conversion_pct": "10",
        "plan_mix": {"studio": "100"},
        "costs_start": "2026-01-05",
        "costs_end": "2026-01-08",
    }
    out = _post(staff, EVALUATE, inputs).json()
    report = unit_cost_report(date(2026, 1, 5), date(2026, 1, 8))
    per_gen = {m["model"]: m["cost_per_generation_usd"] for m in report["models"]}
    assert per_gen == {"model-a": "14.163158", "model-b": "34.318421"}
    lines = {m["model"]: m for m in out["models"]}
    assert lines["model-a"]["cost_per_generation_usd"] == "14.163158"
    assert lines["model-a"]["cost_source"] == "measured"
    # 50 generations each, none cached.
    assert out["totals"]["gpu_cost_usd"] == "2424.078950"  # (14.163158 + 34.318421) × 50
    assert out["totals"]["revenue_usd"] == "990.000000"  # 10 paid × $99
    assert out["warnings"] == []


def test_a_model_with_no_measured_cost_is_a_warning_with_an_override_way_out(staff):
    inputs = {k: v for k, v in EXAMPLE.items() if k != "cost_overrides"}
    out = _post(staff, EVALUATE, inputs).json()
    assert {w["model"] for w in out["warnings"]} == {"image-fast", "video-hd"}
    assert {w["code"] for w in out["warnings"]} == {"no_measured_cost"}
    assert out["totals"]["gpu_cost_usd"] == "0.000000"


def test_save_list_retrieve(staff):
    response = _post(staff, LIST, {"name": "  Launch  ", "inputs": EXAMPLE})
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["name"] == "Launch"
    assert created["created_by"] == staff.user.email
    assert created["outputs"]["totals"]["gross_margin_usd"] == "8020.000000"
    scenario = Scenario.objects.get()
    assert scenario.created_by == staff.user
    assert scenario.inputs["mau"] == 10000
    assert scenario.inputs["model_mix"] == {"image-fast": "80", "video-hd": "20"}
    event = AuditEvent.objects.get(action="planning.scenario_created")
    assert (event.actor, event.target_id) == (staff.user, str(scenario.pk))

    listing = staff.get(LIST).json()
    assert [s["name"] for s in listing["results"]] == ["Launch"]
    assert "outputs" not in listing["results"][0]
    detail = staff.get(f"{LIST}{scenario.pk}/").json()
    assert detail["outputs"]["totals"]["break_even_paid_users"] == 30
    assert_problem(staff.get(f"{LIST}{scenario.pk + 1000}/"), status=404, code="not_found")


BAD_INPUTS = [
    ({"mau": -5}, "mau"),
    ({"mau": "ten"}, "mau"),
    ({"mau": 10**30}, "mau"),
    ({"mau": 1.5}, "mau"),
    ({"generations_per_user": "1e400"}, "generations_per_user"),
    ({"conversion_pct": "101"}, "conversion_pct"),
    ({"cache_hit_pct": "NaN"}, "cache_hit_pct"),
    ({"model_mix": {"image-fast": "80", "video-hd": "10"}}, "model_mix"),
    ({"model_mix": {"image-fast": "80", "nope": "20"}}, "model_mix"),
    ({"model_mix": {}}, "model_mix"),
    ({"plan_mix": {"starter": "50", "creator": "40"}}, "plan_mix"),
    ({"plan_mix": {"starter": "50", "unknown-plan": "50"}}, "plan_mix"),
    ({"plan_mix": {"free": "100"}}, "plan_mix"),
    ({"plan_mix": {"enterprise": "100"}}, "plan_mix"),
    ({"baseline": [{"name": "", "monthly_usd": "5"}]}, "baseline.0.name"),
    ({"baseline": [{"name": "DB", "monthly_usd": "-5"}]}, "baseline.0.monthly_usd"),
    ({"baseline": "lots"}, "baseline"),
    ({"cost_overrides": {"video-hd": "-1"}}, "cost_overrides"),
    ({"costs_start": "2026-02-01", "costs_end": "2026-01-01"}, "costs_end"),
    ({"costs_start": "1066-10-14"}, "costs_start"),
    ({"surprise": 1}, "surprise"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUTS)
def test_bad_inputs_are_a_400_and_nothing_is_written(staff, change, field):
    inputs = {**EXAMPLE, **change}
    events = AuditEvent.objects.count()
    for url, body in ((EVALUATE, inputs), (LIST, {"name": "bad", "inputs": inputs})):
        problem = assert_problem(_post(staff, url, body), status=400, code="validation_error")
        assert field in problem["errors"], problem
    assert Scenario.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_messages_never_echo_a_hostile_key(staff):
    key = "<script>" + "x" * 5000
    body = assert_problem(
        _post(staff, EVALUATE, {**EXAMPLE, "model_mix": {key: "100"}}),
        status=400,
        code="validation_error",
    )
    assert "<script>" not in json.dumps(body)


def test_nul_bytes_are_refused(staff):
    raw = json.dumps({"name": "a\u0000b", "inputs": EXAMPLE})
    response = staff.post(LIST, data=raw, content_type="application/json")
    assert_problem(response, status=400, code="validation_error")
    baseline = [{"name": "DB\u0000", "monthly_usd": "5"}]
    response = _post(staff, EVALUATE, {**EXAMPLE, "baseline": baseline})
    assert_problem(response, status=400, code="validation_error")
    assert Scenario.objects.count() == 0


def test_save_needs_a_name_and_an_inputs_object(staff):
    for body in (
        {"inputs": EXAMPLE},
        {"name": " ", "inputs": EXAMPLE},
        {"name": "x", "inputs": []},
    ):
        assert_problem(_post(staff, LIST, body), status=400, code="validation_error")
    body = assert_problem(
        _post(staff, LIST, {"name": "x" * 101, "inputs": EXAMPLE}),
        status=400,
        code="validation_error",
    )
    assert "name" in body["errors"]
    assert Scenario.objects.count() == 0
