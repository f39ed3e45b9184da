"""Hand-computed cases of spec §3's method. Every case runs on the set-based SQL engine and is
checked against the reference implementation (the oracle, tests/infra_costs/reference.py) too."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from infra_costs.registry import set_external_costs_provider
from tests.infra_costs.conftest import assert_matches_reference, model_row, pool_row


def both(world, start, end, **kwargs) -> dict:
    """The report from the SQL engine, after checking it against the reference."""
    sql = world.report(start, end, **kwargs)
    ref_kwargs = {k: v for k, v in kwargs.items() if k in ("window", "timezone", "idle_policy")}
    assert_matches_reference(sql, world.reference(start, end, **ref_kwargs))
    fully = sum(Decimal(m["fully_loaded_cost_usd"]) for m in sql["models"])
    assert fully + Decimal(sql["totals"]["unattributed_usd"]) == Decimal(
        sql["totals"]["infra_cost_usd"]
    )
    return sql


def test_one_node_one_job(world):
    world.pool("p", ("3.60", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 01:00", pool="p")
    world.job("n", "2026-01-05 00:10", "2026-01-05 00:40", model="m")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "p") == {
        "pool": "p",
        "uptime_hours": "1.000000",
        "busy_hours": "0.500000",
        "idle_hours": "0.500000",
        "idle_fraction": "0.500000",
        "cost_usd": "3.600000",
        "allocated_usd": "3.600000",
        "unallocated_usd": "0.000000",
    }
    m = model_row(r, "m")
    assert (m["generations"], m["gpu_hours"], m["active_cost_usd"]) == (1, "0.500000", "1.800000")
    assert m["allocated_cost_usd"] == m["fully_loaded_cost_usd"] == "3.600000"
    assert m["cost_per_generation_usd"] == "3.600000"
    assert m["active_cost_per_generation_usd"] == "1.800000"
    assert r["totals"]["idle_fraction"] == "0.500000"
    assert r["totals"]["unattributed_usd"] == "0.000000"


def test_day_with_uptime_and_no_jobs_is_shared_by_allocated_cost(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-07 00:00", pool="p")
    world.job("n", "2026-01-05 01:00", "2026-01-05 02:00", model="a")  # 3,600 s
    world.job("n", "2026-01-05 03:00", "2026-01-05 05:00", model="b")  # 7,200 s
    r = both(world, "2026-01-05", "2026-01-07")
    # Day 1: $24 split 1:2; day 2: $24, no weight → unallocated, shared 8:16.
    assert pool_row(r, "p")["allocated_usd"] == "24.000000"
    assert pool_row(r, "p")["unallocated_usd"] == "24.000000"
    a, b = model_row(r, "a"), model_row(r, "b")
    assert (a["allocated_cost_usd"], a["fully_loaded_cost_usd"]) == ("8.000000", "16.000000")
    assert (b["allocated_cost_usd"], b["fully_loaded_cost_usd"]) == ("16.000000", "32.000000")
    assert r["totals"]["unattributed_usd"] == "0.000000"


def test_rate_change_at_noon_splits_the_window(world):
    world.pool("p", ("2.00", "2026-01-01 00:00"), ("4.00", "2026-01-05 12:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-06 00:00", pool="p")
    world.job("n", "2026-01-05 11:00", "2026-01-05 13:00", model="m")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "p")["cost_usd"] == "72.000000"  # 12 h × 2 + 12 h × 4
    m = model_row(r, "m")
    assert m["active_cost_usd"] == "6.000000"  # 1 h × 2 + 1 h × 4
    assert m["allocated_cost_usd"] == "72.000000"
    assert m["gpu_hours"] == "2.000000"


def test_overlapping_uptime_counts_once_and_overlapping_jobs_are_busy_once(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 10:00", pool="p")
    world.up("n", "2026-01-05 05:00", "2026-01-05 12:00")
    world.up("n", "2026-01-05 11:00", "2026-01-05 11:30")
    world.job("n", "2026-01-05 04:00", "2026-01-05 06:00", model="a")
    world.job("n", "2026-01-05 05:00", "2026-01-05 07:00", model="b")
    r = both(world, "2026-01-05", "2026-01-06")
    p = pool_row(r, "p")
    assert (p["uptime_hours"], p["cost_usd"]) == ("12.000000", "12.000000")
    assert p["busy_hours"] == "3.000000"  # the union of the two jobs
    assert model_row(r, "a")["allocated_cost_usd"] == "6.000000"  # equal weights
    assert model_row(r, "b")["allocated_cost_usd"] == "6.000000"


def test_job_crossing_midnight_weighs_in_both_windows(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 22:00", "2026-01-06 02:00", pool="p")
    world.job("n", "2026-01-05 23:30", "2026-01-06 00:30", model="a")
    world.job("n", "2026-01-06 01:00", "2026-01-06 01:30", model="b")
    r = both(world, "2026-01-05", "2026-01-07")
    # Day 1: $2 all to a (1,800 s). Day 2: $2 split 1,800 s : 1,800 s.
    assert model_row(r, "a")["allocated_cost_usd"] == "3.000000"
    assert model_row(r, "b")["allocated_cost_usd"] == "1.000000"
    assert pool_row(r, "p")["busy_hours"] == "1.500000"


def test_a_job_belongs_to_the_period_it_finished_in(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 22:00", "2026-01-06 02:00", pool="p")
    world.job("n", "2026-01-05 23:30", "2026-01-06 00:30", model="a")
    r = both(world, "2026-01-05", "2026-01-06")
    # The job finished on 01-06: not in this period at all. Its pool had no succeeded job.
    assert r["models"] == []
    assert pool_row(r, "p")["busy_hours"] == "0.000000"
    assert r["totals"]["unattributed_usd"] == "2.000000"
    r = both(world, "2026-01-06", "2026-01-07")
    # In the next period only its seconds inside the period weigh (1,800 s).
    a = model_row(r, "a")
    assert (a["gpu_hours"], a["allocated_cost_usd"]) == ("0.500000", "2.000000")


def test_failed_jobs_are_busy_but_weightless_and_cancelled_are_not_counted(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 04:00", pool="p")
    world.job("n", "2026-01-05 00:00", "2026-01-05 01:00", model="a")
    world.job("n", "2026-01-05 01:00", "2026-01-05 03:00", model="a", status="failed")
    world.job("n", "2026-01-05 03:00", "2026-01-05 04:00", model="b", status="cancelled")
    r = both(world, "2026-01-05", "2026-01-06")
    p = pool_row(r, "p")
    assert (p["busy_hours"], p["idle_fraction"]) == ("4.000000", "0.000000")
    a, b = model_row(r, "a"), model_row(r, "b")
    assert (a["generations"], a["failed"], a["allocated_cost_usd"]) == (1, 1, "4.000000")
    assert a["active_cost_usd"] == "1.000000"  # succeeded jobs only
    assert (b["generations"], b["failed"], b["fully_loaded_cost_usd"]) == (0, 0, "0.000000")
    assert b["cost_per_generation_usd"] is None
    assert b["active_cost_per_generation_usd"] is None


def test_pool_with_no_succeeded_job_is_unattributed(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.pool("q", ("2.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 02:00", pool="p")
    world.up("x", "2026-01-05 00:00", "2026-01-05 10:00", pool="q")
    world.job("n", "2026-01-05 00:00", "2026-01-05 01:00", model="a")
    world.job("x", "2026-01-05 00:00", "2026-01-05 05:00", model="a", status="failed")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "q")["busy_hours"] == "5.000000"
    assert pool_row(r, "q")["unallocated_usd"] == "20.000000"
    assert r["totals"]["unattributed_usd"] == "20.000000"
    assert model_row(r, "a")["fully_loaded_cost_usd"] == "2.000000"  # pool p only
    assert r["totals"]["infra_cost_usd"] == "22.000000"


def test_hour_windows(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 03:00", pool="p")
    world.job("n", "2026-01-05 00:30", "2026-01-05 01:30", model="a")
    world.job("n", "2026-01-05 02:00", "2026-01-05 02:15", model="b")
    hourly = both(world, "2026-01-05", "2026-01-06", window="hour")
    assert hourly["period"]["windows"] == 24
    # Hours 0 and 1 all to a, hour 2 all to b.
    assert model_row(hourly, "a")["allocated_cost_usd"] == "2.000000"
    assert model_row(hourly, "b")["allocated_cost_usd"] == "1.000000"
    daily = both(world, "2026-01-05", "2026-01-06")
    # One window: $3 split 3,600 s : 900 s.
    assert model_row(daily, "a")["allocated_cost_usd"] == "2.400000"
    assert model_row(daily, "b")["allocated_cost_usd"] == "0.600000"


def test_dst_day_in_berlin_has_23_hours(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    # The local day 2026-03-29 in Berlin: 2026-03-28 23:00 UTC → 2026-03-29 22:00 UTC.
    world.up("n", "2026-03-28 23:00", "2026-03-29 22:00", pool="p")
    world.job("n", "2026-03-29 10:00+02:00", "2026-03-29 11:00+02:00", model="a")
    daily = both(world, "2026-03-29", "2026-03-30", timezone="Europe/Berlin")
    assert daily["period"]["windows"] == 1
    assert daily["period"]["start_at"] == "2026-03-28T23:00:00+00:00"
    assert pool_row(daily, "p")["uptime_hours"] == "23.000000"
    assert model_row(daily, "a")["fully_loaded_cost_usd"] == "23.000000"
    hourly = both(world, "2026-03-29", "2026-03-30", window="hour", timezone="Europe/Berlin")
    assert hourly["period"]["windows"] == 23
    a = model_row(hourly, "a")
    assert (a["allocated_cost_usd"], a["fully_loaded_cost_usd"]) == ("1.000000", "23.000000")
    assert pool_row(hourly, "p")["unallocated_usd"] == "22.000000"
    # The same data over the UTC day: 22 h of it.
    utc = both(world, "2026-03-29", "2026-03-30")
    assert pool_row(utc, "p")["uptime_hours"] == "22.000000"


def test_autumn_dst_day_has_25_hour_windows(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-10-24 22:00", "2026-10-25 23:00", pool="p")
    r = both(world, "2026-10-25", "2026-10-26", window="hour", timezone="Europe/Berlin")
    assert r["period"]["windows"] == 25
    assert pool_row(r, "p")["uptime_hours"] == "25.000000"


def test_separate_idle_policy(world):
    world.pool("p", ("2.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 10:00", pool="p")
    world.job("n", "2026-01-05 00:00", "2026-01-05 01:00", model="a")
    world.job("n", "2026-01-05 01:00", "2026-01-05 01:30", model="a", status="failed")
    r = both(world, "2026-01-05", "2026-01-06", idle_policy="separate")
    a = model_row(r, "a")
    assert a["fully_loaded_cost_usd"] == a["allocated_cost_usd"] == a["active_cost_usd"]
    assert a["fully_loaded_cost_usd"] == "2.000000"
    assert r["idle"] == [{"pool": "p", "idle_hours": "8.500000", "idle_cost_usd": "18.000000"}]
    assert pool_row(r, "p")["unallocated_usd"] == "18.000000"
    assert r["totals"]["unattributed_usd"] == "18.000000"


def test_job_time_outside_uptime_weighs_and_warns(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 01:00", pool="p")
    world.job("n", "2026-01-05 00:30", "2026-01-05 01:30", model="a")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "p")["busy_hours"] == "0.500000"
    assert model_row(r, "a")["gpu_hours"] == "1.000000"  # all of it weighs
    assert model_row(r, "a")["allocated_cost_usd"] == "1.000000"
    [warning] = r["warnings"]
    assert warning["code"] == "job_outside_uptime"
    assert (warning["pool"], warning["node"], warning["seconds"]) == ("p", "n", "1800.000000")
    assert "1800 s" in warning["message"]


def test_uptime_before_the_first_rate_is_free_and_warned(world):
    world.pool("p", ("1.00", "2026-01-05 12:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-06 00:00", pool="p")
    r = both(world, "2026-01-05", "2026-01-06")
    assert pool_row(r, "p")["cost_usd"] == "12.000000"
    assert [w["code"] for w in r["warnings"]] == ["no_rate"]


def test_external_cost_per_generation(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 02:00", pool="p")
    world.job("n", "2026-01-05 00:00", "2026-01-05 00:30", model="a")
    world.job("n", "2026-01-05 01:00", "2026-01-05 01:30", model="a")
    from infra_costs import registry

    previous = registry._provider  # the generations app's provider: put back afterwards
    set_external_costs_provider(lambda slugs: {"a": Decimal("0.25")})
    try:
        r = world.report("2026-01-05", "2026-01-06")
    finally:
        set_external_costs_provider(previous)
    a = model_row(r, "a")
    assert a["external_cost_usd"] == "0.500000"
    assert a["cost_per_generation_usd"] == "1.250000"  # (2.00 + 0.50) / 2
    assert a["active_cost_per_generation_usd"] == "0.750000"  # (1.00 + 0.50) / 2
    assert r["totals"]["weighted_avg_cost_per_generation_usd"] == "1.250000"


def test_rounding_keeps_the_invariant_exact(world):
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 01:00", pool="p")
    for model in ("a", "b", "c"):
        world.job("n", "2026-01-05 00:00", "2026-01-05 00:20", model=model)
    r = both(world, "2026-01-05", "2026-01-06")
    shares = sorted(m["fully_loaded_cost_usd"] for m in r["models"])
    assert shares == ["0.333333", "0.333333", "0.333334"]
    assert sum(Fraction(s) for s in shares) == 1


def test_empty_period(world):
    r = world.report("2026-01-05", "2026-01-06")
    assert r["pools"] == [] and r["models"] == [] and r["warnings"] == []
    assert r["totals"] == {
        "infra_cost_usd": "0.000000",
        "generations": 0,
        "unattributed_usd": "0.000000",
        "weighted_avg_cost_per_generation_usd": None,
        "idle_fraction": None,
        "external_cost_usd": "0.000000",
        "stage_cost_usd": "0.000000",
    }


@pytest.mark.django_db(transaction=True)
def test_concurrent_busy_pass_on_a_second_connection(monkeypatch):
    """Outside a transaction the busy pass runs on a helper connection that imports the
    report transaction's snapshot; it gives exactly what the in-transaction path gives."""
    from infra_costs.allocation import hourly, sql, unit_cost_report
    from tests.infra_costs.conftest import World, d

    monkeypatch.setattr(hourly, "eligible", lambda inp: False)  # the full engine
    world = World()
    world.pool("p", ("1.00", "2026-01-01 00:00"))
    world.up("n", "2026-01-05 00:00", "2026-01-05 02:00", pool="p")
    world.job("n", "2026-01-05 00:30", "2026-01-05 03:00", model="a")
    calls = []
    helper = sql._helper_busy
    monkeypatch.setattr(sql, "_helper_busy", lambda *a, **k: calls.append(1) or helper(*a, **k))
    concurrent = unit_cost_report(d("2026-01-05"), d("2026-01-06"))
    assert calls == [1]
    monkeypatch.setattr(sql, "_helper_busy", lambda *a, **k: 1 / 0)  # falls back
    fallback = unit_cost_report(d("2026-01-05"), d("2026-01-06"))
    assert concurrent == fallback
    assert pool_row(concurrent, "p")["busy_hours"] == "1.500000"
    assert concurrent["warnings"][0]["seconds"] == "3600.000000"
