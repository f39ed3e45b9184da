"""Spec §3's worked example, end to end: the CSV files through the import commands, then
`manage.py unit_costs --format json` — every number the spec states."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from tests.infra_costs.conftest import DATA, model_row, pool_row

pytestmark = pytest.mark.django_db


def _import_example() -> None:
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())


def _unit_costs(*args: str) -> dict:
    out = io.StringIO()
    call_command(
        "unit_costs",
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-08",
        "--format",
        "json",
        *args,
        stdout=out,
    )
    return json.loads(out.getvalue())


def test_worked_example_numbers():
    _import_example()
    report = _unit_costs()

    assert set(report) == {"period", "pools", "models", "totals", "stages", "warnings"}
    assert report["stages"] == []  # no model declares pipeline stages
    assert report["period"]["windows"] == 3
    assert report["warnings"] == []

    gpu1 = pool_row(report, "gpu1")
    assert gpu1 == {
        "pool": "gpu1",
        "uptime_hours": "18.000000",  # n1 12 h (overlap counted once) + n2 4 h + n1 2 h
        "busy_hours": "0.916667",  # 2,100 s + 600 s + 600 s
        "idle_hours": "17.083333",
        "idle_fraction": "0.949074",
        "cost_usd": "82.800000",  # 46.80 + 21.60 + 14.40
        "allocated_usd": "68.400000",
        "unallocated_usd": "14.400000",  # day 01-07: uptime, no weight
    }
    gpu2 = pool_row(report, "gpu2")
    assert gpu2["cost_usd"] == "24.000000"
    assert gpu2["uptime_hours"] == "24.000000"
    assert gpu2["allocated_usd"] == "0.000000"
    assert gpu2["unallocated_usd"] == "24.000000"

    a = model_row(report, "model-a")
    assert a == {
        "model": "model-a",
        "generations": 1,
        "failed": 1,
        "gpu_hours": "0.166667",
        "active_cost_usd": "0.600000",
        "allocated_cost_usd": "11.700000",
        "fully_loaded_cost_usd": "14.163158",  # 11.70 + 14.40 × 11.70 / 68.40
        "external_cost_usd": "0.000000",
        "stage_cost_usd": "0.000000",
        "cost_per_generation_usd": "14.163158",
        "active_cost_per_generation_usd": "0.600000",
    }
    b = model_row(report, "model-b")
    assert b == {
        "model": "model-b",
        "generations": 2,
        "failed": 0,
        "gpu_hours": "0.666667",
        "active_cost_usd": "3.000000",  # j4: 600 s at 3.60 + 600 s at 7.20, j2 1,200 s at 3.60
        "allocated_cost_usd": "56.700000",  # 23.40 + 11.70 + 21.60
        "fully_loaded_cost_usd": "68.636842",
        "external_cost_usd": "0.000000",
        "stage_cost_usd": "0.000000",
        "cost_per_generation_usd": "34.318421",
        "active_cost_per_generation_usd": "1.500000",
    }
    assert report["totals"] == {
        "infra_cost_usd": "106.800000",
        "generations": 3,
        "unattributed_usd": "24.000000",  # gpu2: no succeeded job ever
        "weighted_avg_cost_per_generation_usd": "27.600000",
        "idle_fraction": "0.978175",
        "external_cost_usd": "0.000000",
        "stage_cost_usd": "0.000000",
    }


def test_worked_example_invariant_and_the_reference_agrees():
    from decimal import Decimal

    from infra_costs.allocation import unit_cost_report
    from tests.infra_costs.conftest import assert_matches_reference, d, reference_from_db

    _import_example()
    sql = unit_cost_report(d("2026-01-05"), d("2026-01-08"))
    assert_matches_reference(sql, reference_from_db("2026-01-05", "2026-01-08"))
    fully = sum(Decimal(m["fully_loaded_cost_usd"]) for m in sql["models"])
    assert fully + Decimal(sql["totals"]["unattributed_usd"]) == Decimal(
        sql["totals"]["infra_cost_usd"]
    )


def test_worked_example_separate_idle_policy():
    _import_example()
    report = _unit_costs("--idle-policy", "separate")
    a, b = model_row(report, "model-a"), model_row(report, "model-b")
    # Jobs get their active cost only …
    assert a["fully_loaded_cost_usd"] == a["allocated_cost_usd"] == "0.600000"
    assert b["fully_loaded_cost_usd"] == b["allocated_cost_usd"] == "3.000000"
    assert b["cost_per_generation_usd"] == "1.500000"
    # … and idle is one line per pool.
    assert report["idle"] == [
        {"pool": "gpu1", "idle_hours": "17.083333", "idle_cost_usd": "79.200000"},
        {"pool": "gpu2", "idle_hours": "24.000000", "idle_cost_usd": "24.000000"},
    ]
    assert pool_row(report, "gpu1")["allocated_usd"] == "3.600000"
    assert report["totals"]["unattributed_usd"] == "103.200000"
    assert report["totals"]["infra_cost_usd"] == "106.800000"
    assert report["totals"]["weighted_avg_cost_per_generation_usd"] == "1.200000"


def test_table_and_csv_formats():
    _import_example()
    out = io.StringIO()
    call_command("unit_costs", "--start", "2026-01-05", "--end", "2026-01-08", stdout=out)
    table = out.getvalue()
    assert "model-b" in table and "34.318421" in table and "94.9%" in table
    out = io.StringIO()
    call_command(
        "unit_costs",
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-08",
        "--format",
        "csv",
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("model,generations,failed,gpu_hours,active_cost_usd")
    assert lines[1].startswith("model-a,1,1,0.166667,0.600000,11.700000,14.163158")
    assert len(lines) == 3
