"""Pool economics (planning.pool_economics): the math on the hand-computed example of
docs/planning.md ("Pool economics"), and the reads on created GPU runs, uptime and rates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from planning.pool_economics import (
    UTILIZATION_LEVELS,
    OwnInputs,
    ServiceTime,
    cost_per_generation,
    erlang_c,
    generations_per_node_hour,
    nodes_needed,
    one_node_limit,
    peak_hours,
    per_month,
    pool_economics,
    pool_rent_vs_buy,
    rent_vs_buy,
    service_times,
    wait_quantile,
)

D = Decimal
# The docs' example: one model whose runs take 30 s and 42 s (mean 36 s, variance 36 s²).
EXAMPLE = ServiceTime(
    model="img", runs=2, total_s=D(72), total_sq_s=D(30 * 30 + 42 * 42), median_s=D(30)
)
EXAMPLE_OWN = OwnInputs(
    cards_usd=D(16000),
    server_usd=D(5600),
    depreciation_months=36,
    power_kw=D("1.0"),
    power_usd_per_kwh=D("0.20"),
    hosting_usd_month=D(349),
    nodes=2,
)


def close(value: Decimal | None, expected: str, places: int = 6) -> bool:
    return value is not None and abs(value - D(expected)) < D(10) ** -places


# --- The worked example (docs/planning.md) ------------------------------------------------------


def test_example_service_time_statistics():
    assert EXAMPLE.mean_s == 36
    assert close(EXAMPLE.cs2, str(D(1) / D(36)), 20)


def test_example_cost_per_generation_at_each_utilization_level():
    expected = {"0.1": "0.36", "0.3": "0.12", "0.5": "0.072", "0.8": "0.045", "1": "0.036"}
    for u in UTILIZATION_LEVELS:
        cost = cost_per_generation(rate_usd=D("3.60"), service_s=EXAMPLE.mean_s, utilization=u)
        assert cost == D(expected[str(u)]), u
    assert generations_per_node_hour(service_s=D(36), utilization=D(1)) == 100
    assert generations_per_node_hour(service_s=D(36), utilization=D("0.5")) == 50


def test_cost_per_generation_is_undefined_at_zero_utilization():
    assert cost_per_generation(rate_usd=D(3), service_s=D(36), utilization=D(0)) is None


def test_example_queue_waits_on_one_node():
    wait_50 = wait_quantile(nodes=1, load=D("0.5"), service_s=D(36), cs2=EXAMPLE.cs2)
    wait_30 = wait_quantile(nodes=1, load=D("0.3"), service_s=D(36), cs2=EXAMPLE.cs2)
    assert close(wait_50, "85.195648", 5)  # ln 10 × 37 ÷ 1
    assert close(wait_30, "47.353643", 5)  # ln 6 × 37 ÷ 1.4
    wait_10 = wait_quantile(nodes=1, load=D("0.1"), service_s=D(36), cs2=EXAMPLE.cs2)
    wait_80 = wait_quantile(nodes=1, load=D("0.8"), service_s=D(36), cs2=EXAMPLE.cs2)
    assert close(wait_10, "14.248025", 5)  # ln 2 × 37 ÷ 1.8
    assert close(wait_80, "256.464457", 5)  # ln 16 × 37 ÷ 0.4
    # Below 5% utilization 95% of arrivals find the node free: no wait at p95.
    assert wait_quantile(nodes=1, load=D("0.04"), service_s=D(36), cs2=EXAMPLE.cs2) == 0
    # At or above full load the queue grows without bound.
    assert wait_quantile(nodes=1, load=D(1), service_s=D(36), cs2=EXAMPLE.cs2) is None


def test_example_second_node_threshold():
    limit = one_node_limit(service_s=D(36), cs2=EXAMPLE.cs2, sla_s=D(60))
    assert limit == D("0.377053")
    at_limit = wait_quantile(nodes=1, load=limit, service_s=D(36), cs2=EXAMPLE.cs2)
    above = wait_quantile(nodes=1, load=limit + D("0.000001"), service_s=D(36), cs2=EXAMPLE.cs2)
    assert at_limit <= 60 < above
    assert close(generations_per_node_hour(service_s=D(36), utilization=limit), "37.7053", 4)


def test_example_nodes_needed_for_a_demand():
    assert erlang_c(nodes=2, load=D("0.5")) == D("0.1")
    wait = wait_quantile(nodes=2, load=D("0.5"), service_s=D(36), cs2=EXAMPLE.cs2)
    assert close(wait, "8.548815", 5)  # ln 2 × 37 ÷ 3
    kwargs = {"service_s": D(36), "cs2": EXAMPLE.cs2, "sla_s": D(60)}
    assert nodes_needed(demand_per_hour=D(50), **kwargs) == 2
    assert nodes_needed(demand_per_hour=D(30), **kwargs) == 1
    assert nodes_needed(demand_per_hour=D(0), **kwargs) == 1
    assert nodes_needed(demand_per_hour=D(1_000_000), **kwargs) is None  # > 10,000 nodes


def test_one_node_limit_grows_with_the_sla_and_with_steadier_service():
    tight = one_node_limit(service_s=D(36), cs2=D(1), sla_s=D(10))
    loose = one_node_limit(service_s=D(36), cs2=D(1), sla_s=D(600))
    steady = one_node_limit(service_s=D(36), cs2=D(0), sla_s=D(10))
    assert D("0.05") <= tight < steady < loose < 1
    # With no queueing allowed, one node serves until 5% of arrivals would find it busy.
    assert close(one_node_limit(service_s=D(36), cs2=D(1), sla_s=D(0)), "0.05", 5)


def test_example_rent_vs_buy():
    rb = rent_vs_buy(
        inputs=EXAMPLE_OWN,
        rate_usd=D("3.00"),
        uptime_node_hours_month=per_month(D(1080), period_hours=D(720)),
        busy_node_hours_month=per_month(D(540), period_hours=D(720)),
    )
    assert rb.capex_usd == 43200
    assert rb.depreciation_month_usd == 1200
    assert rb.power_month_usd == 292
    assert rb.hosting_month_usd == 698
    assert rb.own_month_usd == 2190
    assert rb.capacity_node_hours == 1460
    assert rb.rent_node_hours == 1095
    assert rb.rent_month_usd == 3285
    assert rb.rent_busy_month_usd == D("1642.5")
    assert rb.utilization == D("0.75")
    assert rb.busy_utilization == D("0.375")
    assert rb.break_even == D("0.5")
    assert rb.owning_cheaper and rb.saving_month_usd == 1095
    # At the break-even utilization renting costs exactly what owning does.
    assert rb.break_even * rb.capacity_node_hours * rb.rate_usd == rb.own_month_usd


def test_rent_vs_buy_with_a_free_rate_has_no_break_even():
    rb = rent_vs_buy(
        inputs=EXAMPLE_OWN,
        rate_usd=D(0),
        uptime_node_hours_month=D(100),
        busy_node_hours_month=D(50),
    )
    assert rb.break_even is None and not rb.owning_cheaper


# --- Reads --------------------------------------------------------------------------------------


def at(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


_ids = iter(range(1, 1_000_000))


def _run(node: Node, model: str, start: str, seconds: int, status: str = "succeeded"):
    begin = at(start)
    GpuRun.objects.create(
        external_id=f"pe{next(_ids)}",
        model_slug=model,
        pool=node.pool,
        node=node,
        started_at=begin,
        finished_at=begin + timedelta(seconds=seconds),
        status=status,
        source="imported",
    )


@pytest.fixture
def world():
    """Pool `gpu` ($3.00/h, SLA 60 s), one node up 2026-01-05 (24 h); runs of `img` 30, 42,
    30, 42 s and one `vid` of 180 s on that day, a failed run and one outside the period."""
    pool = NodePool.objects.create(slug="gpu", gpu_type="A100", sla_queue_wait_s=60)
    PoolRate.objects.create(
        pool=pool, hourly_rate_usd=D("3.00"), effective_from=at("2026-01-01 00:00")
    )
    PoolRate.objects.create(  # a future price: not the one in force
        pool=pool, hourly_rate_usd=D("9.00"), effective_from=at("2026-03-01 00:00")
    )
    node = Node.objects.create(pool=pool, name="gpu-1")
    UptimeInterval.objects.create(
        node=node, pool=pool, started_at=at("2026-01-05 00:00"), ended_at=at("2026-01-06 00:00")
    )
    _run(node, "img", "2026-01-05 10:00", 30)
    _run(node, "img", "2026-01-05 10:10", 42)
    _run(node, "img", "2026-01-05 10:20", 30)
    _run(node, "img", "2026-01-05 14:00", 42)
    _run(node, "vid", "2026-01-05 15:00", 180)
    _run(node, "img", "2026-01-05 16:00", 400, status="failed")  # busy, no service time
    _run(node, "img", "2026-01-04 10:00", 999)  # before the period
    return pool


@pytest.mark.django_db
def test_service_times_of_succeeded_runs_in_the_period(world):
    times = service_times(start=at("2026-01-05 00:00"), end=at("2026-01-07 00:00"))
    img, vid = times[world.pk]
    assert (img.model, img.runs, img.mean_s, img.median_s) == ("img", 4, 36, 30)
    assert close(img.cs2, str(D(1) / D(36)), 20)
    assert (vid.model, vid.runs, vid.mean_s, vid.cs2) == ("vid", 1, 180, 0)
    mix = ServiceTime.mix([img, vid])
    assert mix.runs == 5 and mix.mean_s == D("64.8")


@pytest.mark.django_db
def test_peak_hour_counts_succeeded_runs_started_in_it(world):
    peaks = peak_hours(start=at("2026-01-05 00:00"), end=at("2026-01-07 00:00"))
    assert peaks[world.pk] == (3, at("2026-01-05 10:00"))


@pytest.mark.django_db
def test_pool_economics_from_measured_runs_uptime_and_rate(world):
    (econ,) = pool_economics(
        start=date(2026, 1, 5), end=date(2026, 1, 7), now=at("2026-01-07 00:00")
    )
    assert econ.rate_usd == D("3.00")
    assert econ.uptime_hours == 24
    # Busy: 4 img + 1 vid + the failed run = 724 s of the 86,400 s up.
    assert econ.measured_utilization == 1 - D("0.991620")  # the report's 6-dp idle fraction
    levels = [r.utilization for r in econ.rows]
    assert levels == sorted(levels) and len(levels) == len(UTILIZATION_LEVELS) + 1
    half = next(r for r in econ.rows if r.utilization == D("0.5"))
    assert half.cost_per_generation_usd == D("3.00") * D("64.8") / 1800
    assert dict(half.model_costs) == {"img": D("0.06"), "vid": D("0.3")}
    # At the measured utilization the mix's cost per generation is the pool's cost per
    # generation: (24 h × $3.00) ÷ 5 generations — up to the failed run's busy time.
    now_row = next(r for r in econ.rows if r.measured)
    assert abs(now_row.cost_per_generation_usd - D(72) / 5 * D(324) / D(724)) < D("0.001")
    assert econ.peak_runs == 3 and econ.demand_is_measured
    assert econ.demand_per_hour == 3 and econ.nodes_needed == 1
    assert econ.limit == one_node_limit(service_s=D("64.8"), cs2=econ.mix.cs2, sla_s=D(60))


@pytest.mark.django_db
def test_a_demand_to_plan_for_replaces_the_measured_peak(world):
    (econ,) = pool_economics(
        start=date(2026, 1, 5),
        end=date(2026, 1, 7),
        demand={"gpu": D(200)},
        now=at("2026-01-07 00:00"),
    )
    assert not econ.demand_is_measured
    assert econ.load == D(200) * D("64.8") / 3600
    assert econ.nodes_needed == nodes_needed(
        demand_per_hour=D(200), service_s=D("64.8"), cs2=econ.mix.cs2, sla_s=D(60)
    )
    assert econ.nodes_needed >= 5  # 3.6 node-hours of work an hour


@pytest.mark.django_db
def test_rent_vs_buy_of_a_pool_scales_its_measured_hours_to_a_month(world):
    (econ,) = pool_economics(
        start=date(2026, 1, 5), end=date(2026, 1, 7), now=at("2026-01-07 00:00")
    )
    rb = pool_rent_vs_buy(econ, EXAMPLE_OWN)
    # 24 node-hours in 48 hours → 365 node-hours in a 730-hour month, at $3.00.
    assert rb.rent_node_hours == 365
    assert rb.rent_month_usd == 1095
    assert rb.utilization == D("0.25") and rb.break_even == D("0.5")
    assert not rb.owning_cheaper


@pytest.mark.django_db
def test_a_pool_without_runs_or_rate_is_listed_without_a_table():
    NodePool.objects.create(slug="empty", gpu_type="L4")
    (econ,) = pool_economics(
        start=date(2026, 1, 5), end=date(2026, 1, 7), now=at("2026-01-07 00:00")
    )
    assert not econ.ready and econ.rows == [] and econ.nodes_needed is None
    assert econ.measured_utilization is None
