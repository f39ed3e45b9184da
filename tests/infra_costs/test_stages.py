"""Per-generation pipeline stages in the unit-cost report: CPU seconds at a CPU rate and fixed
costs, per succeeded generation, as their own lines; added to the cost per generation like the
external cost; never part of the infrastructure cost or its invariant.

The small world, hand-computed (day window, 2026-01-05, UTC):
- pool p at 1.00 USD/h, node n up 00:00→04:00: cost 4.00. Model a: two succeeded 30-min jobs and
  a failed one; model b: one succeeded 1-h job. Weights a 3,600 s, b 3,600 s → 2.00 each, no
  unallocated. Pool q at 2.00 USD/h, 1 h up, no jobs: unattributed 2.00. Infrastructure 6.00.
- a: external 0.25/gen; stages "upscale (CPU)" 4.5 s at 0.05 USD/CPU-h (0.0000625/gen) and
  "storage" 0.0004/gen → 0.0004625/gen × 2 = 0.000925.
  Cost per generation (2.00 + 0.50 + 0.000925) / 2 = 1.2504625 → 1.250463.
- b: stage "encode (CPU)" 1 s at 0.05 USD/CPU-h = 0.0000138…/gen (does not terminate: exact
  until display). Cost per generation 2.0000138… → 2.000014.
- Weighted average (4.00 + 0.50 + 0.000938888…) / 3 = 1.500312962… → 1.500313.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal as D

import pytest
from django.core.management import call_command

from infra_costs import registry, report
from infra_costs.registry import Stage, stage_costs_for
from tests.infra_costs.conftest import model_row

START, END = "2026-01-05", "2026-01-06"

STAGES = {
    "a": [Stage.cpu("upscale (CPU)", D("4.5"), D("0.05")), Stage.fixed("storage", D("0.0004"))],
    "b": [Stage.cpu("encode (CPU)", D("1"), D("0.05"))],
}


@pytest.fixture
def providers(monkeypatch):
    """Register test providers; the generations app's come back after the test."""

    def use(*, stages=None, external=None):
        monkeypatch.setattr(registry, "_stage_provider", lambda slugs: stages or {})
        monkeypatch.setattr(registry, "_provider", lambda slugs: external or {})

    return use


@pytest.fixture
def small(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.pool("q", ("2.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 04:00", pool="p")
    world.up("m", "2026-01-05 10:00", "2026-01-05 11:00", pool="q")
    world.job("n", "2026-01-05 00:00", "2026-01-05 00:30", model="a")
    world.job("n", "2026-01-05 01:00", "2026-01-05 01:30", model="a")
    world.job("n", "2026-01-05 01:30", "2026-01-05 01:40", model="a", status="failed")
    world.job("n", "2026-01-05 02:00", "2026-01-05 03:00", model="b")
    return world


def test_stage_costs_are_their_own_lines_and_enter_the_cost_per_generation(small, providers):
    providers(stages=STAGES, external={"a": D("0.25")})
    r = small.report(START, END)
    a, b = model_row(r, "a"), model_row(r, "b")
    assert (a["generations"], a["failed"], b["generations"]) == (2, 1, 1)
    assert a["fully_loaded_cost_usd"] == b["fully_loaded_cost_usd"] == "2.000000"
    assert a["external_cost_usd"] == "0.500000"
    assert a["stage_cost_usd"] == "0.000925"
    assert a["cost_per_generation_usd"] == "1.250463"  # (2.00 + 0.50 + 0.000925) / 2
    assert a["active_cost_per_generation_usd"] == "0.750463"  # (1.00 + 0.50 + 0.000925) / 2
    assert b["stage_cost_usd"] == "0.000014"
    assert b["cost_per_generation_usd"] == "2.000014"
    assert r["stages"] == [
        {
            "model": "a",
            "stage": "upscale (CPU)",
            "kind": "cpu",
            "generations": 2,
            "cpu_seconds_per_generation": "4.500000",
            "cpu_hourly_usd": "0.050000",
            "usd_per_generation": "0.000063",  # 0.0000625, rounded for display only
            "cost_usd": "0.000125",
        },
        {
            "model": "a",
            "stage": "storage",
            "kind": "fixed",
            "generations": 2,
            "cpu_seconds_per_generation": None,
            "cpu_hourly_usd": None,
            "usd_per_generation": "0.000400",
            "cost_usd": "0.000800",
        },
        {
            "model": "b",
            "stage": "encode (CPU)",
            "kind": "cpu",
            "generations": 1,
            "cpu_seconds_per_generation": "1.000000",
            "cpu_hourly_usd": "0.050000",
            "usd_per_generation": "0.000014",
            "cost_usd": "0.000014",
        },
    ]
    t = r["totals"]
    assert t["stage_cost_usd"] == "0.000939"  # 0.000925 + 0.0000138…
    assert t["external_cost_usd"] == "0.500000"
    assert t["weighted_avg_cost_per_generation_usd"] == "1.500313"


def test_stages_are_not_infrastructure_the_invariant_holds(small, providers):
    providers()
    plain = small.report(START, END)
    providers(stages=STAGES, external={"a": D("0.25")})
    staged = small.report(START, END)
    # Pools, fully loaded costs, the infrastructure total and unattributed are unchanged …
    assert staged["pools"] == plain["pools"]
    infra_keys = ("infra_cost_usd", "generations", "unattributed_usd", "idle_fraction")
    assert {k: staged["totals"][k] for k in infra_keys} == {
        k: plain["totals"][k] for k in infra_keys
    }
    assert staged["totals"]["infra_cost_usd"] == "6.000000"
    assert staged["totals"]["unattributed_usd"] == "2.000000"
    for row in staged["models"]:
        before = model_row(plain, row["model"])
        assert row["fully_loaded_cost_usd"] == before["fully_loaded_cost_usd"]
        assert row["allocated_cost_usd"] == before["allocated_cost_usd"]
    # … Σ fully loaded + unattributed == infrastructure, exactly …
    fully = sum(D(m["fully_loaded_cost_usd"]) for m in staged["models"])
    assert fully + D(staged["totals"]["unattributed_usd"]) == D(staged["totals"]["infra_cost_usd"])
    # … and the stage lines add up to each model's stage cost and to the total.
    for row in staged["models"]:
        lines = [s for s in staged["stages"] if s["model"] == row["model"]]
        assert sum(D(s["cost_usd"]) for s in lines) == D(row["stage_cost_usd"])
    assert sum(D(m["stage_cost_usd"]) for m in staged["models"]) == D(
        staged["totals"]["stage_cost_usd"]
    )
    # Per model: cost per generation × generations == fully loaded + external + stages (±1e-6).
    for row in staged["models"]:
        whole = D(row["fully_loaded_cost_usd"]) + D(row["external_cost_usd"])
        whole += D(row["stage_cost_usd"])
        assert abs(D(row["cost_per_generation_usd"]) * row["generations"] - whole) <= D("2e-6")


def test_separate_idle_policy_adds_stages_to_the_active_cost(small, providers):
    providers(stages=STAGES)
    r = small.report(START, END, idle_policy="separate")
    a = model_row(r, "a")
    assert a["fully_loaded_cost_usd"] == "1.000000"  # active only
    assert a["cost_per_generation_usd"] == "0.500463"  # (1.00 + 0.000925) / 2
    assert r["totals"]["stage_cost_usd"] == "0.000939"


def test_a_model_with_no_succeeded_generation_has_zero_stage_lines(world, providers):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 01:00", pool="p")
    world.job("n", "2026-01-05 00:00", "2026-01-05 00:30", model="a", status="failed")
    providers(stages=STAGES)
    r = world.report(START, END)
    a = model_row(r, "a")
    assert (a["generations"], a["stage_cost_usd"], a["cost_per_generation_usd"]) == (
        0,
        "0.000000",
        None,
    )
    assert [s["cost_usd"] for s in r["stages"]] == ["0.000000", "0.000000"]


def test_cpu_stage_cost_is_exact_multiplying_before_dividing():
    stage = Stage.cpu("encode", D("1"), D("0.05"))
    assert stage.cost(72) == D("0.001")  # 72 × 1 s × 0.05 / 3600, no rounding on the way
    assert Stage.fixed("storage", D("0.0004")).cost(3) == D("0.0012")


def test_registry_refuses_negative_or_unknown_stages(providers):
    providers(stages={"a": [Stage.fixed("refund", D("-1"))]})
    with pytest.raises(ValueError, match="negative"):
        stage_costs_for(["a"])
    providers(stages={"a": [Stage("gpu", "gpu", usd=D(1))]})
    with pytest.raises(ValueError, match="unknown kind"):
        stage_costs_for(["a"])
    providers()
    assert stage_costs_for(["a", "b"]) == {"a": [], "b": []}


# --- Outputs: JSON, table, CSV -----------------------------------------------------------------


def _command(*args: str) -> str:
    out = io.StringIO()
    call_command("unit_costs", "--start", START, "--end", END, *args, stdout=out)
    return out.getvalue()


def test_unit_costs_command_json_has_the_stage_fields(small, providers):
    providers(stages=STAGES, external={"a": D("0.25")})
    data = json.loads(_command("--format", "json"))
    assert data == small.report(START, END)
    assert model_row(data, "a")["stage_cost_usd"] == "0.000925"
    assert [(s["model"], s["stage"]) for s in data["stages"]] == [
        ("a", "upscale (CPU)"),
        ("a", "storage"),
        ("b", "encode (CPU)"),
    ]


def test_table_and_csv_show_the_stage_lines(small, providers):
    providers(stages=STAGES)
    table = _command()
    assert "stages $" in table
    assert "Pipeline stages per generation" in table
    assert "upscale (CPU)" in table and "0.000125" in table
    assert "Pipeline stages      $0.000939 (not infrastructure)" in table

    models = list(csv.DictReader(io.StringIO(_command("--format", "csv"))))
    assert {m["model"]: m["stage_cost_usd"] for m in models} == {"a": "0.000925", "b": "0.000014"}

    lines = list(csv.DictReader(io.StringIO(_command("--format", "csv", "--csv-table", "stages"))))
    assert tuple(lines[0]) == report.STAGE_COLUMNS
    assert [(r["model"], r["stage"], r["cost_usd"]) for r in lines] == [
        ("a", "upscale (CPU)", "0.000125"),
        ("a", "storage", "0.000800"),
        ("b", "encode (CPU)", "0.000014"),
    ]
    assert lines[1]["cpu_seconds_per_generation"] == ""  # a fixed stage has no CPU time


# --- Staff report page -------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    from accounts.models import User

    staff = User.objects.create_user(email="ops@example.com", password="pw-ops-1", is_staff=True)
    client.force_login(staff)
    return client


def test_staff_page_shows_the_stage_lines_and_their_csv(small, providers, staff_client):
    providers(stages=STAGES)
    period = {"start": START, "end": END}
    page = staff_client.get("/staff/costs/", period)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="stages-table"' in html and 'data-stage="upscale (CPU)"' in html
    assert "$0.000125" in html  # upscale (CPU) of model a: 2 × 4.5 s at 0.05 USD/h
    assert "not infrastructure" in html
    response = staff_client.get("/staff/costs/stages.csv", period)
    assert response.status_code == 200
    assert "unit-costs-stages-2026-01-05_2026-01-06.csv" in response["Content-Disposition"]
    assert response.content.decode() == report.stages_as_csv(small.report(START, END))


def test_staff_page_without_stages_has_no_stage_table(small, providers, staff_client):
    providers()
    html = staff_client.get("/staff/costs/", {"start": START, "end": END}).content.decode()
    assert 'id="stages-table"' not in html and "Stages CSV" not in html
