"""The node lifecycle on the simulated provider: operations take their time, fail as the
provider says, and every change of billing writes the uptime it cost."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from infra_costs import fleet
from infra_costs import services as infra_services
from infra_costs.models import (
    AutoscalePolicy,
    CapacityType,
    GpuRun,
    Node,
    NodeEvent,
    NodeHealth,
    NodeState,
    ScalingAction,
    UptimeInterval,
)
from tests.factories import make_pool

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 10, 20, tzinfo=UTC)
FAST = {"rent_delay_s": [600, 600], "resume_delay_s": [120, 120], "model_load_s": 0}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def managed_pool(slug="a100", **policy):
    pool = make_pool(slug)
    config = {**FAST, **policy.pop("provider_config", {})}
    AutoscalePolicy.objects.create(pool=pool, provider_config=config, **policy)
    return pool


def hot_node(pool, now=T0, primary=False) -> Node:
    node = fleet.node_rent(pool=pool, now=now, primary=primary)
    fleet.fleet_advance(now=node.transition_ready_at)
    node.refresh_from_db()
    assert node.state == NodeState.HOT
    return node


def intervals(node):
    return list(
        UptimeInterval.objects.filter(node=node)
        .order_by("started_at")
        .values_list("rate_kind", "started_at", "ended_at")
    )


def test_rent_takes_its_delay_and_bills_from_the_request():
    pool = managed_pool()
    node = fleet.node_rent(pool=pool, now=T0)
    assert (node.state, node.transition) == (NodeState.COLD, "renting")
    assert node.transition_ready_at == at(10)
    assert fleet.fleet_advance(now=at(9)) == []  # not yet
    node.refresh_from_db()
    assert node.transition == "renting" and not node.takes_work
    assert fleet.fleet_advance(now=at(12)) == [pool.pk]
    node.refresh_from_db()
    assert (node.state, node.transition, node.state_since) == (NodeState.HOT, "", at(10))
    assert (node.billing_kind, node.billing_since) == ("on_demand", T0)


def test_a_refused_rent_writes_nothing_and_the_decision_says_why():
    pool = managed_pool(provider_config={"rent_failure_rate": 1})
    decision = fleet.pool_autoscale(pool=pool, signals=fleet.QueueSignals(), now=T0)
    assert (decision.action, decision.ok) == (ScalingAction.RENT, False)
    assert "capacity" in decision.error
    assert not Node.objects.exists() and not UptimeInterval.objects.exists()


def test_a_failed_resume_goes_back_to_warm_and_bills_the_attempt_at_the_hourly_rate():
    pool = managed_pool(provider_config={"resume_failure_rate": 1})
    node = hot_node(pool)
    assert fleet.node_stop(node=node, now=at(20))
    fleet.fleet_advance(now=at(21))
    assert fleet.node_resume(node=node, now=at(30))
    fleet.fleet_advance(now=at(35))
    node.refresh_from_db()
    assert (node.state, node.transition) == (NodeState.WARM, "")
    assert NodeEvent.objects.filter(node=node, message__startswith="resume failed").exists()
    stop_done = at(20) + timedelta(seconds=30)
    assert intervals(node) == [
        ("on_demand", T0, stop_done),
        ("warm", stop_done, at(30)),
        ("on_demand", at(30), at(32)),  # the failed attempt, until the provider gave up
    ]
    assert (node.billing_kind, node.billing_since) == ("warm", at(32))


def test_the_tick_is_idempotent_and_closes_uptime_at_hour_boundaries():
    pool = managed_pool()
    node = hot_node(pool)
    for _ in range(2):
        fleet.fleet_advance(now=T0.replace(hour=12, minute=5))
    node.refresh_from_db()
    assert intervals(node) == [("on_demand", T0, T0.replace(hour=12, minute=0))]
    assert node.billing_since == T0.replace(hour=12, minute=0)
    assert NodeEvent.objects.filter(node=node).count() == 2  # rent requested, hot


def test_spot_nodes_record_spot_uptime():
    pool = managed_pool(capacity_type=CapacityType.SPOT)
    node = hot_node(pool)
    fleet.node_stop(node=node, now=at(15))
    fleet.fleet_advance(now=at(16))
    assert [k for k, *_ in intervals(node)] == ["spot"]


def test_health_comes_from_the_provider():
    pool = managed_pool()
    node = hot_node(pool)
    AutoscalePolicy.objects.filter(pool=pool).update(provider_config={**FAST, "down": [node.name]})
    fleet.fleet_advance(now=at(15))
    node.refresh_from_db()
    assert node.health == NodeHealth.DOWN
    assert NodeEvent.objects.filter(node=node, message__startswith="health down").count() == 1


def test_a_serving_node_cannot_be_stopped_or_released():
    pool = managed_pool()
    node = hot_node(pool)
    with transaction.atomic():
        assert fleet.node_acquire(pool_id=pool.pk, now=at(11)) == node.name
        infra_services.gpu_run_start(
            external_id="j1", model_slug="m", pool=pool, node_name=node.name, started_at=at(11)
        )
    assert not fleet.node_stop(node=node, now=at(12))
    assert not fleet.node_release(node=node, now=at(12))
    with transaction.atomic():
        infra_services.gpu_run_finish(external_id="j1", status="succeeded", finished_at=at(13))
        assert fleet.node_free(node_name=node.name, now=at(13)) == pool.pk
    node.refresh_from_db()
    assert node.state == NodeState.HOT
    assert fleet.node_stop(node=node, now=at(14))


def test_warm_cold_and_transitioning_nodes_take_no_work():
    pool = managed_pool()
    warm = hot_node(pool)
    fleet.node_stop(node=warm, now=at(11))
    fleet.fleet_advance(now=at(12))
    fleet.node_rent(pool=pool, now=at(12))  # renting
    fleet.node_resume(node=warm, now=at(13))  # resuming
    assert fleet.node_acquire(pool_id=pool.pk, now=at(13)) is None
    assert fleet.free_slots(pool_ids=[pool.pk]) == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_slot():
    """Eight threads race for two one-slot nodes, each recording its run in the same
    transaction as its claim: exactly two win, on different nodes."""
    pool = managed_pool()
    a, b = hot_node(pool), hot_node(pool, now=at(1))
    barrier = threading.Barrier(8)
    won: list[str] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                name = fleet.node_acquire(pool_id=pool.pk, now=at(20))
                if name:
                    infra_services.gpu_run_start(
                        external_id=f"r{i}",
                        model_slug="m",
                        pool=pool,
                        node_name=name,
                        started_at=at(20),
                    )
                    with lock:
                        won.append(name)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted([a.name, b.name])
    assert GpuRun.objects.filter(status="running").count() == 2


def test_a_node_just_resumed_is_not_stopped_for_its_past_idleness():
    """Its last job ended long ago, but it turned hot only now: not idle for 30 min yet."""
    pool = managed_pool()
    hot_node(pool, primary=True)
    standby = hot_node(pool, now=at(1))
    fleet.node_stop(node=standby, now=at(15))
    fleet.fleet_advance(now=at(16))
    Node.objects.filter(pk=standby.pk).update(last_busy_at=at(-600))
    AutoscalePolicy.objects.filter(pool=pool).update(calm_since=at(-600))
    assert fleet.node_resume(node=standby, now=at(100))
    fleet.fleet_advance(now=at(103))  # hot since at(102)
    calm = fleet.QueueSignals()
    assert fleet.pool_autoscale(pool=pool, signals=calm, now=at(103)) is None
    decision = fleet.pool_autoscale(pool=pool, signals=calm, now=at(132))
    assert (decision.action, decision.node) == (ScalingAction.STOP, standby)
