"""Fleet reads for operations (infra_costs.fleet.selectors): cost so far per pool at the rate of
each interval's kind, and the GPU busy fraction of a window."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra_costs.fleet.selectors import fleet_cost, fleet_cost_today, pool_busy_fraction
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from tests.infra_costs.conftest import at

pytestmark = pytest.mark.django_db


def pool(slug: str, hourly: str = "2.00", *, warm: str | None = None, spot: str | None = None):
    p = NodePool.objects.create(slug=slug, gpu_type=slug.upper())
    PoolRate.objects.create(
        pool=p,
        hourly_rate_usd=Decimal(hourly),
        warm_hourly_rate_usd=Decimal(warm) if warm else None,
        spot_hourly_rate_usd=Decimal(spot) if spot else None,
        effective_from=at("2026-01-01 00:00"),
    )
    return p


def node(p: NodePool, name: str, **fields) -> Node:
    return Node.objects.create(pool=p, name=name, **fields)


def up(n: Node, start: str, end: str, kind: str = "on_demand") -> None:
    UptimeInterval.objects.create(
        node=n, pool=n.pool, started_at=at(start), ended_at=at(end), rate_kind=kind
    )


_runs = iter(range(1, 1_000_000))


def run(n: Node, start: str, end: str | None) -> None:
    GpuRun.objects.create(
        external_id=f"r{next(_runs)}",
        model_slug="m",
        pool=n.pool,
        node=n,
        started_at=at(start),
        finished_at=at(end) if end else None,
        status="succeeded" if end else "running",
        source="live",
    )


def billing(p: NodePool, name: str, since: str, kind: str = "on_demand") -> Node:
    return node(
        p, name, provider="simulated", state="hot", billing_kind=kind, billing_since=at(since)
    )


# --- fleet_cost_today ----------------------------------------------------------------------------


def test_cost_today_clips_intervals_to_the_utc_day_and_bills_each_kind_at_its_rate():
    a100 = pool("a100", "2.00", warm="0.50", spot="1.00")
    n1 = node(a100, "n1")
    up(n1, "2026-03-09 22:00", "2026-03-10 02:00")  # 2 h today at 2.00 → 4.00
    up(n1, "2026-03-10 03:00", "2026-03-10 04:00", "spot")  # 1 h at 1.00 → 1.00
    up(n1, "2026-03-10 04:00", "2026-03-10 06:00", "warm")  # 2 h at 0.50 → 1.00
    up(n1, "2026-03-11 01:00", "2026-03-11 02:00")  # tomorrow: not today
    billing(a100, "managed", "2026-03-10 10:00")  # open since 10:00, now 12:00 → 4.00

    cost = fleet_cost_today(now=at("2026-03-10 12:00"))

    assert cost == {a100.id: Decimal("10.00")}


def test_cost_today_has_every_pool_and_zero_for_a_pool_that_billed_nothing():
    a100, l4 = pool("a100"), pool("l4")
    up(node(a100, "n1"), "2026-03-10 00:00", "2026-03-10 00:30")

    cost = fleet_cost_today(now=at("2026-03-10 12:00"))

    assert cost == {a100.id: Decimal("1.00"), l4.id: Decimal(0)}


def test_spot_without_a_spot_rate_costs_the_hourly_rate_and_warm_without_a_warm_rate_is_free():
    a100 = pool("a100", "3.00")
    n1 = node(a100, "n1")
    up(n1, "2026-03-10 01:00", "2026-03-10 02:00", "spot")
    up(n1, "2026-03-10 02:00", "2026-03-10 05:00", "warm")
    billing(a100, "managed", "2026-03-10 11:00", "warm")

    assert fleet_cost_today(now=at("2026-03-10 12:00")) == {a100.id: Decimal("3.00")}


def test_interval_uses_the_rate_in_force_at_its_start():
    a100 = pool("a100", "2.00")
    PoolRate.objects.create(
        pool=a100, hourly_rate_usd=Decimal("4.00"), effective_from=at("2026-03-10 06:00")
    )
    n1 = node(a100, "n1")
    up(n1, "2026-03-10 05:00", "2026-03-10 07:00")  # started at 2.00
    up(n1, "2026-03-10 08:00", "2026-03-10 09:00")  # started at 4.00

    assert fleet_cost_today(now=at("2026-03-10 12:00")) == {a100.id: Decimal("8.00")}


def test_open_billing_started_yesterday_counts_only_since_midnight():
    a100 = pool("a100", "2.00")
    billing(a100, "managed", "2026-03-09 20:00")

    assert fleet_cost_today(now=at("2026-03-10 01:30")) == {a100.id: Decimal("3.00")}


def test_fleet_cost_over_a_window_ignores_billing_that_opened_after_now():
    a100 = pool("a100", "1.00")
    up(node(a100, "n1"), "2026-03-01 00:00", "2026-03-03 00:00")
    billing(a100, "later", "2026-03-10 13:00")

    cost = fleet_cost(
        start=at("2026-03-02 00:00"), end=at("2026-03-11 00:00"), now=at("2026-03-10 12:00")
    )

    assert cost == {a100.id: Decimal("24.00")}


def test_fleet_cost_is_one_query(django_assert_num_queries):
    for slug in ("a100", "l4", "h100"):
        p = pool(slug)
        up(node(p, f"{slug}-1"), "2026-03-10 00:00", "2026-03-10 01:00")
        billing(p, f"{slug}-m", "2026-03-10 10:00")

    with django_assert_num_queries(1):
        fleet_cost_today(now=at("2026-03-10 12:00"))


# --- pool_busy_fraction --------------------------------------------------------------------------


def test_busy_fraction_is_run_seconds_over_uptime_in_the_window():
    a100 = pool("a100")
    n1 = node(a100, "n1")
    up(n1, "2026-03-10 10:00", "2026-03-10 12:00")  # 1 h inside the window
    run(n1, "2026-03-10 10:50", "2026-03-10 11:15")  # 15 min inside
    run(n1, "2026-03-10 11:30", None)  # running: 30 min up to the window's end

    fractions = pool_busy_fraction(start=at("2026-03-10 11:00"), end=at("2026-03-10 12:00"))

    assert fractions == {a100.id: Decimal("0.75")}


def test_busy_fraction_counts_open_billing_as_uptime_but_not_warm_time():
    a100 = pool("a100")
    hot = billing(a100, "hot", "2026-03-10 11:00")
    billing(a100, "stopped", "2026-03-10 09:00", "warm")
    up(hot, "2026-03-10 10:30", "2026-03-10 11:00", "warm")
    run(hot, "2026-03-10 11:00", "2026-03-10 11:15")

    fractions = pool_busy_fraction(start=at("2026-03-10 11:00"), end=at("2026-03-10 12:00"))

    assert fractions == {a100.id: Decimal("0.25")}


def test_busy_fraction_is_none_without_uptime_and_capped_at_one():
    a100, l4 = pool("a100"), pool("l4")
    n1 = node(a100, "n1")
    up(n1, "2026-03-10 11:00", "2026-03-10 11:30")
    run(n1, "2026-03-10 11:00", "2026-03-10 11:30")
    run(n1, "2026-03-10 11:00", "2026-03-10 11:30")  # concurrent: 1 h of runs in 30 min
    run(node(l4, "l4-1"), "2026-03-10 11:00", "2026-03-10 11:10")  # runs but no uptime

    fractions = pool_busy_fraction(start=at("2026-03-10 11:00"), end=at("2026-03-10 12:00"))

    assert fractions == {a100.id: Decimal(1), l4.id: None}


def test_busy_fraction_is_one_query(django_assert_num_queries):
    for slug in ("a100", "l4", "h100"):
        n = node(pool(slug), f"{slug}-1")
        up(n, "2026-03-10 10:00", "2026-03-10 12:00")
        run(n, "2026-03-10 11:00", None)

    with django_assert_num_queries(1):
        pool_busy_fraction(start=at("2026-03-10 11:00"), end=at("2026-03-10 12:00"))
