"""Uptime billed at the rate of the node's state: `on_demand` at the hourly rate, `spot` at the
spot rate (else the hourly rate), `warm` at the warm rate (else $0). Every case runs on the SQL
engine, is checked against the reference implementation and keeps the invariant
Σ fully loaded + unattributed == infrastructure cost."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.infra_costs.conftest import model_row, pool_row
from tests.infra_costs.test_allocation import both


def three_kinds(world, *, warm: str | None, spot: str | None) -> None:
    """n1 on demand 00:00-06:00 then warm 06:00-12:00; n2 spot 00:00-05:00; a job on each."""
    world.pool("p")
    world.rate("p", "2.00", "2026-01-01 00:00", warm=warm, spot=spot)
    world.up("n1", "2026-01-05 00:00", "2026-01-05 06:00", pool="p")
    world.up("n1", "2026-01-05 06:00", "2026-01-05 12:00", kind="warm")
    world.up("n2", "2026-01-05 00:00", "2026-01-05 05:00", pool="p", kind="spot")
    world.job("n1", "2026-01-05 01:00", "2026-01-05 02:00", model="a")  # 3,600 s
    world.job("n2", "2026-01-05 02:00", "2026-01-05 04:00", model="b")  # 7,200 s


@pytest.mark.parametrize(
    ("warm", "spot", "cost", "alloc_a", "alloc_b"),
    [
        # 6 h × 2.00 + 6 h × 0.50 + 5 h × 1.20
        ("0.50", "1.20", "21.000000", "7.000000", "14.000000"),
        # no warm rate: warm time is free; no spot rate: spot time at the hourly rate
        (None, None, "22.000000", "7.333333", "14.666667"),
        ("0.50", None, "25.000000", "8.333333", "16.666667"),
        (None, "1.20", "18.000000", "6.000000", "12.000000"),
    ],
)
def test_pool_cost_is_each_kinds_uptime_at_that_kinds_rate(
    world, warm, spot, cost, alloc_a, alloc_b
):
    three_kinds(world, warm=warm, spot=spot)
    r = both(world, "2026-01-05", "2026-01-06")
    p = pool_row(r, "p")
    assert p["cost_usd"] == r["totals"]["infra_cost_usd"] == cost
    # Warm time is paid and unused: it is uptime, and idle.
    assert (p["uptime_hours"], p["busy_hours"], p["idle_hours"]) == (
        "17.000000",
        "3.000000",
        "14.000000",
    )
    a, b = model_row(r, "a"), model_row(r, "b")
    assert (a["fully_loaded_cost_usd"], b["fully_loaded_cost_usd"]) == (alloc_a, alloc_b)
    # Active cost stays at the on-demand hourly rate, spot node or not.
    assert (a["active_cost_usd"], b["active_cost_usd"]) == ("2.000000", "4.000000")
    assert not [w for w in r["warnings"] if w["code"] == "no_rate"]


def test_a_rate_change_inside_a_warm_interval_splits_it(world):
    world.pool("p")
    world.rate("p", "2.00", "2026-01-01 00:00", warm="0.50")
    world.rate("p", "3.00", "2026-01-05 09:00", warm="1.00")
    world.rate("p", "3.00", "2026-01-05 10:00")  # the provider stops charging for warm nodes
    world.up("n1", "2026-01-05 06:00", "2026-01-05 12:00", pool="p", kind="warm")
    world.up("n1", "2026-01-05 12:00", "2026-01-05 13:00")
    world.job("n1", "2026-01-05 12:00", "2026-01-05 12:30", model="m")
    r = both(world, "2026-01-05", "2026-01-06")
    # warm: 3 h × 0.50 + 1 h × 1.00 + 2 h × $0; on demand: 1 h × 3.00
    assert pool_row(r, "p")["cost_usd"] == "5.500000"
    assert pool_row(r, "p")["uptime_hours"] == "7.000000"
    m = model_row(r, "m")
    assert (m["fully_loaded_cost_usd"], m["active_cost_usd"]) == ("5.500000", "1.500000")
    assert not [w for w in r["warnings"] if w["code"] == "no_rate"]


def test_warm_time_before_the_first_rate_is_free_but_on_demand_time_is_unpriced(world):
    world.pool("p")
    world.rate("p", "2.00", "2026-01-05 12:00")
    world.up("n1", "2026-01-05 00:00", "2026-01-05 06:00", pool="p", kind="warm")
    world.up("n1", "2026-01-05 06:00", "2026-01-05 14:00")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "p")["cost_usd"] == "4.000000"  # 2 h × 2.00
    assert pool_row(r, "p")["uptime_hours"] == "14.000000"
    assert r["totals"]["unattributed_usd"] == "4.000000"
    (no_rate,) = [w for w in r["warnings"] if w["code"] == "no_rate"]
    assert no_rate["seconds"] == "21600.000000"  # 06:00-12:00 on demand; warm time is $0


def test_overlaps_of_one_kind_count_once_and_busy_time_spans_kinds(world):
    world.pool("p")
    world.rate("p", "2.00", "2026-01-01 00:00", warm="0.25")
    world.up("n1", "2026-01-05 00:00", "2026-01-05 06:00", pool="p")
    world.up("n1", "2026-01-05 06:00", "2026-01-05 09:00", kind="warm")
    world.up("n1", "2026-01-05 07:00", "2026-01-05 10:00", kind="warm")  # 07-09 counts once
    world.job("n1", "2026-01-05 05:00", "2026-01-05 07:00", model="m")  # across the change
    world.job("n1", "2026-01-05 10:30", "2026-01-05 11:00", model="m", status="failed")
    r = both(world, "2026-01-05", "2026-01-06")
    p = pool_row(r, "p")
    assert p["cost_usd"] == "13.000000"  # 6 h × 2.00 + 4 h × 0.25
    assert (p["uptime_hours"], p["busy_hours"], p["idle_hours"]) == (
        "10.000000",
        "2.000000",
        "8.000000",
    )
    (outside,) = [w for w in r["warnings"] if w["code"] == "job_outside_uptime"]
    assert outside["seconds"] == "1800.000000"  # only the job after every interval


def test_separate_idle_policy_counts_warm_time_as_idle(world):
    three_kinds(world, warm="0.50", spot="1.20")
    r = both(world, "2026-01-05", "2026-01-06", idle_policy="separate")
    (idle,) = r["idle"]
    # 21.00 − active 2.00 − active 4.00
    assert (idle["idle_hours"], idle["idle_cost_usd"]) == ("14.000000", "15.000000")


def test_unit_costs_command_json_includes_warm_and_spot_cost(world):
    three_kinds(world, warm="0.50", spot="1.20")
    out = io.StringIO()
    call_command(
        "unit_costs", "--start", "2026-01-05", "--end", "2026-01-06", "--format", "json", stdout=out
    )
    report = json.loads(out.getvalue())
    assert pool_row(report, "p")["cost_usd"] == report["totals"]["infra_cost_usd"] == "21.000000"
    fully = sum(Decimal(m["fully_loaded_cost_usd"]) for m in report["models"])
    assert fully + Decimal(report["totals"]["unattributed_usd"]) == Decimal("21")
