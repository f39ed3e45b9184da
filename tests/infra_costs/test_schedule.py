"""Schedule fallback: a pool without recorded uptime in the period is costed from its
set-points (cron, node count, time zone) expanded with croniter."""

from __future__ import annotations

from infra_costs.models import ScheduleSetPoint
from infra_costs.schedule import pool_sizes
from tests.infra_costs.conftest import at, model_row, pool_row


def set_point(world, pool: str, cron: str, count: int, tz: str = "UTC") -> ScheduleSetPoint:
    return ScheduleSetPoint.objects.create(
        pool=world.pools[pool], cron=cron, node_count=count, timezone=tz
    )


def test_schedule_gives_planned_node_hours(world):
    world.pool("s", ("1.00", "2026-01-01 00:00"))
    set_point(world, "s", "0 8 * * *", 2)
    set_point(world, "s", "0 20 * * *", 0)
    world.node("s-1", "s")
    world.job("s-1", "2026-01-05 09:00", "2026-01-05 10:00", model="a")
    world.job("s-1", "2026-01-05 21:00", "2026-01-05 21:30", model="a")  # pool size 0 then
    r = world.report("2026-01-05", "2026-01-07")
    p = pool_row(r, "s")
    # 2 nodes × 12 h × 2 days; the size before the period (fired 01-04 20:00) is 0.
    assert (p["uptime_hours"], p["cost_usd"]) == ("48.000000", "48.000000")
    assert p["busy_hours"] == "1.000000"
    assert model_row(r, "a")["fully_loaded_cost_usd"] == "48.000000"
    codes = [(w["code"], w.get("seconds")) for w in r["warnings"]]
    assert ("schedule_used", None) in codes
    assert ("job_outside_uptime", "1800.000000") in codes


def test_size_before_the_period_is_the_last_firing(world):
    world.pool("s", ("0.50", "2026-01-01 00:00"))
    set_point(world, "s", "0 8 * * 1", 3)  # Mondays 08:00; 2026-01-05 is a Monday
    r = world.report("2026-01-06", "2026-01-08")
    assert pool_row(r, "s")["uptime_hours"] == "144.000000"  # 3 nodes all along
    assert pool_row(r, "s")["cost_usd"] == "72.000000"
    assert r["totals"]["unattributed_usd"] == "72.000000"


def test_recorded_uptime_wins_over_the_schedule(world):
    world.pool("s", ("1.00", "2026-01-01 00:00"))
    set_point(world, "s", "0 0 * * *", 5)
    world.up("s-1", "2026-01-05 00:00", "2026-01-05 02:00", pool="s")
    r = world.report("2026-01-05", "2026-01-06")
    assert pool_row(r, "s")["uptime_hours"] == "2.000000"
    assert not [w for w in r["warnings"] if w["code"] == "schedule_used"]


def test_set_points_in_a_time_zone():
    from infra_costs.models import NodePool

    pool = NodePool(slug="x", gpu_type="X", pk=1)
    sps = [
        ScheduleSetPoint(pk=1, pool=pool, cron="0 8 * * *", node_count=2, timezone="Europe/Berlin"),
        ScheduleSetPoint(
            pk=2, pool=pool, cron="0 18 * * *", node_count=1, timezone="Europe/Berlin"
        ),
    ]
    steps = pool_sizes(sps, at("2026-03-29 00:00"), at("2026-03-30 00:00"))
    # Berlin is UTC+2 from 2026-03-29 03:00 local on: 08:00 → 06:00 UTC, 18:00 → 16:00 UTC.
    assert steps == [
        (at("2026-03-29 00:00"), 1),
        (at("2026-03-29 06:00"), 2),
        (at("2026-03-29 16:00"), 1),
    ]
