"""The per-hour busy unions of `allocation.hourly` on a worked case: runs that overlap, share a
start, cross hours and run past the edges of uptime islands that cover part of an hour; and a
node up the whole hour. The stored figures are checked against hand-computed ones and the
report from the aggregates against the full engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra_costs import services
from infra_costs.allocation import unit_cost_report
from infra_costs.models import CostHourNode, Node
from tests.infra_costs.conftest import d
from tests.infra_costs.test_cost_aggregates import full_report

pytestmark = pytest.mark.django_db

DAY = "2026-03-28"


def at(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00+00:00"


def test_busy_unions_against_partial_and_whole_hour_uptime():
    services.pools_import(
        rows=[
            {
                "pool": "p0",
                "gpu_type": "L4",
                "hourly_rate_usd": "1.00",
                "effective_from": at("00:00"),
            }
        ]
    )
    up = [
        ("a", "10:00", "10:20"),  # a: islands [10:00, 10:25) and [10:40, 11:30)
        ("a", "10:10", "10:25"),
        ("a", "10:40", "11:30"),
        ("b", "08:00", "13:00"),  # b: up every whole hour
    ]
    services.uptime_import(
        rows=[{"node": n, "pool": "p0", "started_at": at(s), "ended_at": at(e)} for n, s, e in up]
    )
    jobs = [
        ("j1", "a", "09:50", "10:15"),  # crosses 10:00
        ("j2", "a", "10:05", "10:30"),  # past the island's end (10:25), into the gap
        ("j3", "a", "10:05", "10:10"),  # same start as j2, inside it
        ("j4", "a", "10:35", "11:05"),  # starts in the gap, crosses 11:00
        ("j5", "a", "11:20", "11:45"),  # past the end of uptime (11:30)
        ("j6", "b", "10:00", "10:30"),
        ("j7", "b", "10:10", "10:20"),  # inside j6
    ]
    services.jobs_import(
        rows=[
            {
                "external_id": x,
                "model": "m",
                "node": n,
                "started_at": at(s),
                "finished_at": at(e),
                "status": "succeeded",
            }
            for x, n, s, e in jobs
        ]
    )
    names = dict(Node.objects.values_list("id", "name"))
    rows = CostHourNode.objects.values_list("node_id", "hour", "busy_us", "runs_us", "max_finish")
    got = {(names[n], h.hour): (b // 60_000_000, r // 60_000_000) for n, h, b, r, _ in rows}
    assert got == {  # (busy, runs) in minutes
        ("a", 9): (0, 10),  # no uptime before 10:00
        ("a", 10): (45, 55),  # runs [10:00, 10:30) ∪ [10:35, 11:00); up 25 + 20 min of them
        ("a", 11): (15, 30),  # runs [11:00, 11:05) ∪ [11:20, 11:45); up until 11:30
        ("b", 10): (30, 30),
    }
    finishes = {(names[n], h.hour): f for n, h, _, _, f in rows}
    assert finishes[("a", 10)] == datetime(2026, 3, 28, 11, 5, tzinfo=UTC)
    for window in ("day", "hour"):
        assert unit_cost_report(d(DAY), d("2026-03-29"), window=window) == full_report(
            DAY, "2026-03-29", window=window
        )
