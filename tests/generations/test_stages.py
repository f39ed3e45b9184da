"""A model's extra pipeline stages (`AIModel.cost_stages`): validated for people in the admin
(form errors, never a 500; exact decimal strings stored), audited, handed to the unit-cost
report by slug through `infra_costs.registry`, and included in the suggested prices."""

from __future__ import annotations

import io
import json
from datetime import date
from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from accounts.models import AuditEvent, User
from generations import pricing
from generations.models import AIModel
from generations.stages import clean_stages, usd_per_generation
from infra_costs.allocation import unit_cost_report
from tests.factories import make_ai_model
from tests.infra_costs.conftest import DATA, World, model_row

pytestmark = pytest.mark.django_db

UPSCALE = {"name": "upscale (CPU)", "kind": "cpu", "seconds": "4.5", "cpu_hourly_usd": "0.05"}
STORAGE = {"name": "storage", "kind": "fixed", "usd": "0.0004"}


# --- Validation ----------------------------------------------------------------------------------


def test_valid_stages_are_kept_as_exact_decimal_strings():
    assert clean_stages([UPSCALE, STORAGE]) == [UPSCALE, STORAGE]
    # JSON numbers are taken as the decimal they were written as; names are tidied.
    assert clean_stages([{"name": "  notify  ", "kind": "fixed", "usd": 0.0001}]) == [
        {"name": "notify", "kind": "fixed", "usd": "0.0001"}
    ]
    assert clean_stages([{"name": "x", "kind": "cpu", "seconds": 3, "cpu_hourly_usd": "0.10"}]) == [
        {"name": "x", "kind": "cpu", "seconds": "3", "cpu_hourly_usd": "0.1"}
    ]
    assert clean_stages(None) == clean_stages("") == clean_stages([]) == []
    assert usd_per_generation([UPSCALE, STORAGE]) == D("0.0004625")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "storage"}, "Give a list of stages"),
        (["storage"], "Stage 1 must be an object with a name, a kind and its amounts."),
        ([{"kind": "fixed", "usd": "1"}], "Stage 1 needs a name."),
        ([{"name": "x" * 61, "kind": "fixed", "usd": "1"}], "the name is too long"),
        ([STORAGE, {**STORAGE, "name": "Storage"}], "another stage has the same name"),
        ([{"name": "gpu", "kind": "gpu", "usd": "1"}], 'kind must be "cpu" or "fixed"'),
        ([{"name": "s", "kind": "fixed", "usd": "-0.01"}], "Stage 1 (s): USD must be 0 or more."),
        ([{"name": "s", "kind": "fixed", "usd": "lots"}], 'USD must be a number such as "0.05".'),
        ([{"name": "s", "kind": "fixed", "usd": True}], "USD must be a number"),
        ([{"name": "s", "kind": "fixed", "usd": "NaN"}], "USD must be a number"),
        ([{"name": "s", "kind": "fixed", "usd": "0.0000000001"}], "more than 9 decimal places"),
        ([{"name": "s", "kind": "fixed", "usd": "5000"}], "USD must be at most 1,000."),
        ([{"name": "c", "kind": "cpu", "seconds": "1"}], "CPU rate (USD per hour) is missing."),
        ([{**UPSCALE, "seconds": "90000"}], "CPU seconds must be at most 86,400."),
        ([{**STORAGE, "seconds": "1"}], "a fixed stage has only name, kind, usd."),
        ([STORAGE] * 21, "At most 20 stages."),
    ],
)
def test_invalid_stages_are_refused_with_a_message_for_people(value, message):
    with pytest.raises(ValidationError) as exc:
        clean_stages(value)
    assert any(message in m for m in exc.value.messages), exc.value.messages
    assert not any("lots" in m for m in exc.value.messages)  # never echoes the value


def test_every_problem_is_listed():
    with pytest.raises(ValidationError) as exc:
        clean_stages([{"name": "a", "kind": "fixed"}, {"name": "b", "kind": "x"}])
    assert exc.value.messages == [
        "Stage 1 (a): USD is missing.",
        'Stage 2 (b): kind must be "cpu" or "fixed".',
    ]


# --- Admin ---------------------------------------------------------------------------------------


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="pw-root-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


def _form(model: AIModel, cost_stages: str) -> dict:
    return {
        "slug": model.slug,
        "name": model.name,
        "description": model.description,
        "is_active": "on",
        "cache_price_credits": str(model.cache_price_credits),
        "pool": str(model.pool_id),
        "backend": model.backend,
        "backend_config": json.dumps(model.backend_config),
        "max_runtime_s": str(model.max_runtime_s),
        "params_schema": json.dumps(model.params_schema),
        "external_cost_usd": str(model.external_cost_usd),
        "cost_stages": cost_stages,
        "new_price": "",
        "price_reason": "",
        "rates-TOTAL_FORMS": "0",
        "rates-INITIAL_FORMS": "0",
        "rates-MIN_NUM_FORMS": "0",
        "rates-MAX_NUM_FORMS": "0",
    }


def _change_url(model: AIModel) -> str:
    return reverse("admin:generations_aimodel_change", args=[model.pk])


def test_admin_saves_stages_as_exact_strings_with_an_audit_event(staff_client, superuser):
    sdxl = make_ai_model("sdxl")
    stages = [{**UPSCALE, "seconds": 4.5}, STORAGE]
    response = staff_client.post(_change_url(sdxl), _form(sdxl, json.dumps(stages)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    sdxl.refresh_from_db()
    assert sdxl.cost_stages == [UPSCALE, STORAGE]
    event = AuditEvent.objects.get(action="ai_model.costs_changed")
    assert (event.actor, event.target_id) == (superuser, str(sdxl.pk))
    assert event.data["from"]["cost_stages"] == [] and event.data["to"]["cost_stages"] == [
        UPSCALE,
        STORAGE,
    ]
    page = staff_client.get(_change_url(sdxl)).content.decode()
    assert "0.0004625" in page  # the stages' cost per generation, read-only


@pytest.mark.parametrize(
    ("posted", "message"),
    [
        ("{not json", "Enter a valid JSON."),
        (json.dumps([{"name": "s", "kind": "fixed", "usd": "-1"}]), "USD must be 0 or more."),
        (json.dumps({"name": "s"}), "Give a list of stages"),
        (json.dumps([{"name": "s", "kind": "cpu", "seconds": "x"}]), "CPU seconds must be"),
    ],
)
def test_admin_refuses_bad_stages_with_form_errors(staff_client, posted, message):
    sdxl = make_ai_model("sdxl")
    response = staff_client.post(_change_url(sdxl), _form(sdxl, posted))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["cost_stages"]
    assert any(message in e for e in errors), errors
    sdxl.refresh_from_db()
    assert sdxl.cost_stages == []
    assert not AuditEvent.objects.filter(action="ai_model.costs_changed").exists()


def test_admin_empty_stages_means_none(staff_client):
    sdxl = make_ai_model("sdxl", cost_stages=[STORAGE])
    response = staff_client.post(_change_url(sdxl), _form(sdxl, ""))
    assert response.status_code == 302
    sdxl.refresh_from_db()
    assert sdxl.cost_stages == []


# --- The report and the prices -------------------------------------------------------------------


@pytest.fixture
def catalog_providers(monkeypatch):
    """The generations app's providers, as registered at start-up (another test may have
    replaced them)."""
    from generations import receivers, stages
    from infra_costs import registry

    monkeypatch.setattr(registry, "_provider", receivers.external_costs)
    monkeypatch.setattr(registry, "_stage_provider", stages.stage_costs)


@pytest.mark.usefixtures("catalog_providers")
def test_the_report_gets_the_catalogs_stages_by_slug():
    world = World()
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 01:00", pool="p")
    world.job("n", "2026-01-05 00:00", "2026-01-05 00:30", model="sdxl")
    world.job("n", "2026-01-05 00:30", "2026-01-05 01:00", model="sdxl")
    make_ai_model("sdxl", cost_stages=[UPSCALE, STORAGE], external_cost_usd=D("0.01"))
    r = unit_cost_report(date(2026, 1, 5), date(2026, 1, 6))
    row = model_row(r, "sdxl")
    assert row["fully_loaded_cost_usd"] == "1.000000"
    assert row["stage_cost_usd"] == "0.000925"  # 2 × 0.0004625
    assert row["cost_per_generation_usd"] == "0.510463"  # (1.00 + 0.02 + 0.000925) / 2
    assert [(s["stage"], s["cost_usd"]) for s in r["stages"]] == [
        ("upscale (CPU)", "0.000125"),
        ("storage", "0.000800"),
    ]


@pytest.mark.usefixtures("catalog_providers")
def test_suggested_prices_use_the_cost_including_stages():
    """The spec's worked example: model-a costs 14.163158 USD/generation fully loaded. With a
    fixed stage of 0.836842 USD it costs 15.000000: at 1 credit = 0.01 USD and a 40 % margin,
    15 / 0.6 / 0.01 = 2500 credits (2361 without the stage)."""
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    start, end = date(2026, 1, 5), date(2026, 1, 8)
    assert pricing.prices_suggest(start, end).row("model-a").suggested_credits == D(2361)
    AIModel.objects.filter(slug="model-a").update(
        cost_stages=[{"name": "storage", "kind": "fixed", "usd": "0.836842"}]
    )
    row = pricing.prices_suggest(start, end).row("model-a")
    assert row.cost_per_generation_usd == D("15.000000")
    assert row.suggested_credits == D(2500)
