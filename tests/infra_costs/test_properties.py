"""Property tests on random small datasets (uptime of every rate kind, pools with and without
warm and spot rates): the invariant Σ fully loaded + unattributed == infrastructure cost, every
figure non-negative, and the SQL engine equal to the independent reference implementation (the
oracle, tests/infra_costs/reference.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from tests.infra_costs.conftest import World, assert_matches_reference, at

BASE = at("2026-03-28 00:00")  # Berlin switches to summer time on 2026-03-29
RATES = ["0", "0.50", "1.25", "3.60", "7.20", "2.333333"]
MODELS = ["a", "b", "c"]
KINDS = ["on_demand", "on_demand", "spot", "warm"]
OPTIONAL_RATE = st.one_of(st.none(), st.sampled_from(RATES))


@st.composite
def datasets(draw):
    pools = draw(st.integers(1, 2))
    spec = {"pools": [], "uptime": [], "jobs": []}
    for p in range(pools):
        rates = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(RATES),
                    st.integers(-24 * 60, 40 * 60),
                    OPTIONAL_RATE,  # warm
                    OPTIONAL_RATE,  # spot
                ),
                min_size=1,
                max_size=3,
                unique_by=lambda r: r[1],
            )
        )
        nodes = draw(st.integers(1, 3))
        spec["pools"].append((f"p{p}", rates, nodes))
        for n in range(nodes):
            for _ in range(draw(st.integers(0, 3))):
                start = draw(st.integers(-6 * 60, 50 * 60))
                length, kind = draw(st.integers(1, 30 * 60)), draw(st.sampled_from(KINDS))
                spec["uptime"].append((f"p{p}n{n}", f"p{p}", start, length, kind))
            for _ in range(draw(st.integers(0, 6))):
                start = draw(st.integers(-6 * 60, 50 * 60)) * 60 + draw(st.integers(0, 59))
                spec["jobs"].append(
                    (
                        f"p{p}n{n}",
                        f"p{p}",
                        start,
                        draw(st.integers(0, 5 * 3600)),
                        draw(st.sampled_from(MODELS)),
                        draw(st.sampled_from(["succeeded", "succeeded", "failed", "cancelled"])),
                    )
                )
    return spec


def build(spec) -> World:
    for model in (GpuRun, UptimeInterval, Node, PoolRate, NodePool):
        model.objects.all().delete()
    world = World()
    iso = lambda t: t.isoformat()  # noqa: E731
    for slug, rates, _nodes in spec["pools"]:
        world.pool(slug)
        for rate, minutes, warm, spot in rates:
            world.rate(slug, rate, iso(BASE + timedelta(minutes=minutes)), warm=warm, spot=spot)
    # (no two intervals of one node with the same bounds, whatever their kinds)
    uptime = {
        (node, pool, start, length): kind for node, pool, start, length, kind in spec["uptime"]
    }
    for (node, pool, start, length), kind in uptime.items():
        s = BASE + timedelta(minutes=start)
        world.up(node, iso(s), iso(s + timedelta(minutes=length)), pool=pool, kind=kind)
    for node, pool, start, length, model, status in spec["jobs"]:
        s = BASE + timedelta(seconds=start)
        world.job(node, iso(s), iso(s + timedelta(seconds=length)), model, status, pool=pool)
    return world


def check_invariants(report: dict) -> None:
    fully = sum(Decimal(m["fully_loaded_cost_usd"]) for m in report["models"])
    total = Decimal(report["totals"]["infra_cost_usd"])
    assert abs(fully + Decimal(report["totals"]["unattributed_usd"]) - total) <= Decimal("1e-6")
    for row in report["pools"] + report["models"] + [report["totals"]]:
        for key, value in row.items():
            if key in ("pool", "model"):
                continue
            assert value is None or Decimal(str(value)) >= 0, (key, value, row)


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    spec=datasets(),
    window=st.sampled_from(["day", "hour"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin"]),
)
def test_engine_equals_reference_and_invariants_hold(db, spec, window, timezone):
    world = build(spec)
    kwargs = {"window": window, "timezone": timezone}
    sql = world.report("2026-03-28", "2026-03-30", **kwargs)
    check_invariants(sql)
    assert_matches_reference(sql, world.reference("2026-03-28", "2026-03-30", **kwargs))


@SETTINGS
@given(spec=datasets())
def test_separate_policy_matches_reference(db, spec):
    world = build(spec)
    sql = world.report("2026-03-28", "2026-03-30", idle_policy="separate")
    fully = sum(Decimal(m["fully_loaded_cost_usd"]) for m in sql["models"])
    assert fully + Decimal(sql["totals"]["unattributed_usd"]) == Decimal(
        sql["totals"]["infra_cost_usd"]
    )
    assert_matches_reference(
        sql, world.reference("2026-03-28", "2026-03-30", idle_policy="separate")
    )
