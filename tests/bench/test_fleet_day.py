"""bench/fleet_day.py on a tiny volume, one pool, the day's first hours: it runs to the end
and its printed totals add up with the rows it wrote."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from bench import fleet_day
from generations.models import Job, JobStatus
from infra_costs.models import GpuRun, RunStatus, UptimeInterval, UptimeSource

pytestmark = pytest.mark.django_db(transaction=True)


def totals(lines: list[str]) -> dict[str, str]:
    [line] = [ln for ln in lines if ln.startswith("totals:")]
    return dict(re.findall(r"(\w+) (-?[\d.]+)", line))


def test_a_short_day_on_one_pool_finishes_every_accepted_job_and_costs_money():
    lines: list[str] = []
    argv = ["--pools", "l4", "--scale", "0.5", "--hours", "2", "--seed", "3", "--no-progress"]

    status = fleet_day.main(argv, setup_database=False, write=lines.append)

    out = "\n".join(lines)
    assert status == 0, out
    assert "every accepted job finished" in out
    t = totals(lines)
    arrivals, accepted, finished = int(t["arrivals"]), int(t["accepted"]), int(t["finished"])
    assert arrivals > 0
    assert accepted + int(t["refused"]) == arrivals
    assert finished == accepted
    assert Decimal(t["autoscaler_usd"]) > 0
    assert Decimal(t["static_usd"]) > 0
    assert Decimal(t["ratio"]) == pytest.approx(
        Decimal(t["autoscaler_usd"]) / Decimal(t["static_usd"]), abs=Decimal("0.0001")
    )
    # The printed figures are the rows: jobs succeeded through the real finish, GPU runs
    # closed, uptime recorded by the fleet.
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == finished
    assert not Job.objects.exclude(status=JobStatus.SUCCEEDED).exists()
    assert GpuRun.objects.filter(status=RunStatus.SUCCEEDED).count() == finished
    assert UptimeInterval.objects.filter(source=UptimeSource.RECORDED).exists()


def test_the_same_seed_gives_the_same_arrivals_and_the_static_baseline_serves_them_all():
    from datetime import UTC, datetime

    day = datetime(2026, 3, 2, tzinfo=UTC)
    mix = fleet_day.parse_mix(fleet_day.DEFAULT_MIX)
    a = fleet_day.arrivals_for(pools=["a100", "l4"], day_start=day, scale=0.2, seed=7, mix=mix)
    b = fleet_day.arrivals_for(pools=["a100", "l4"], day_start=day, scale=0.2, seed=7, mix=mix)
    assert a == b and a
    assert all(day <= x.at < day.replace(day=3) for x in a)
    static = fleet_day.static_replay(
        a,
        pool="a100",
        day_start=day,
        window_end=day.replace(day=3),
        hourly_rate=Decimal("3.60"),
        free_max_queued=50,
    )
    # Monday on the demo schedule: 2 nodes 00-08, 4 nodes 08-20, 2 nodes 20-24 → 72 node-hours.
    assert static.node_hours == {"on_demand": Decimal(72)}
    assert static.cost_usd == Decimal("259.20")
    served = sum(len(w) for w in static.waits.values())
    assert (
        served + sum(static.refused.values())
        == static.submitted
        == sum(x.pool == "a100" for x in a)
    )
