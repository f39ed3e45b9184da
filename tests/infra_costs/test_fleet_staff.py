"""Staff fleet actions (`fleet_staff_action`) and the fleet page's read (`fleet_overview`): every
action is a recorded decision by its user; what staff may run into (a refusal, a node that moved
on) is a decision with a message, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import User
from infra_costs import fleet
from infra_costs.models import (
    AutoscalePolicy,
    Node,
    NodeState,
    NodeTransition,
    ScalingAction,
    ScalingDecision,
)
from tests.factories import make_pool

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 4, 10, 20, tzinfo=UTC)
FAST = {"rent_delay_s": [600, 600], "resume_delay_s": [120, 120], "model_load_s": 0}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def staff():
    return User.objects.create_user(email="ops@example.com", password="pw-1234567", is_staff=True)


def managed_pool(slug="a100", **policy):
    pool = make_pool(slug)
    config = {**FAST, **policy.pop("provider_config", {})}
    AutoscalePolicy.objects.create(pool=pool, provider_config=config, **policy)
    return pool


def hot_node(pool, now=T0) -> Node:
    node = fleet.node_rent(pool=pool, now=now)
    fleet.fleet_advance(now=node.transition_ready_at)
    node.refresh_from_db()
    return node


def warm_node(pool, now=T0) -> Node:
    node = hot_node(pool, now)
    fleet.node_stop(node=node, now=at(20))
    fleet.fleet_advance(now=at(21))
    node.refresh_from_db()
    assert node.state == NodeState.WARM
    return node


def test_staff_rent_starts_a_node_and_records_who_with_the_counts_it_saw(staff):
    pool = managed_pool()
    hot_node(pool)
    decision = fleet.fleet_staff_action(pool=pool, action="rent", actor=staff, now=at(30))
    node = decision.node
    assert (decision.action, decision.ok, decision.error) == (ScalingAction.RENT, True, "")
    assert decision.decided_by == staff and decision.reason == "by ops@example.com"
    assert decision.at == at(30)
    assert (node.state, node.transition) == (NodeState.COLD, NodeTransition.RENTING)
    assert decision.inputs["hot"] == 1 and decision.inputs["leased"] == 1
    assert decision.inputs["by_state"] == {"cold": 0, "warm": 0, "hot": 1, "serving": 0}


def test_a_refused_rent_is_a_failed_decision_with_the_providers_message(staff):
    pool = managed_pool(provider_config={"rent_failure_rate": 1})
    decision = fleet.fleet_staff_action(pool=pool, action="rent", actor=staff, now=T0)
    assert (decision.ok, decision.node) == (False, None)
    assert "capacity" in decision.error
    assert not Node.objects.exists()
    assert ScalingDecision.objects.get().decided_by == staff


def test_rent_stops_at_the_pools_maximum(staff):
    pool = managed_pool(max_nodes=1)
    hot_node(pool)
    decision = fleet.fleet_staff_action(pool=pool, action="rent", actor=staff, now=at(30))
    assert not decision.ok and decision.error == "The pool is at its maximum of 1 nodes."
    assert Node.objects.count() == 1


@pytest.mark.parametrize(
    ("start", "action", "transition", "after"),
    [
        ("hot", "stop", NodeTransition.STOPPING, NodeState.WARM),
        ("warm", "resume", NodeTransition.RESUMING, NodeState.HOT),
        ("warm", "release", NodeTransition.RELEASING, NodeState.COLD),
        ("hot", "release", NodeTransition.RELEASING, NodeState.COLD),
    ],
)
def test_node_actions_start_the_operation_and_the_tick_completes_it(
    staff, start, action, transition, after
):
    pool = managed_pool()
    node = hot_node(pool) if start == "hot" else warm_node(pool)
    decision = fleet.fleet_staff_action(
        pool=pool, action=action, node=node, actor=staff, now=at(40)
    )
    assert (decision.ok, decision.node, decision.action) == (True, node, action)
    node.refresh_from_db()
    assert node.transition == transition
    fleet.fleet_advance(now=at(60))
    node.refresh_from_db()
    assert (node.state, node.transition) == (after, "")


def test_a_node_in_the_wrong_state_is_a_failed_decision_saying_where_it_is(staff):
    pool = managed_pool()
    node = warm_node(pool)
    decision = fleet.fleet_staff_action(
        pool=pool, action="stop", node=node, actor=staff, now=at(40)
    )
    assert (decision.ok, decision.error) == (False, "The node is warm now.")
    fleet.fleet_staff_action(pool=pool, action="resume", node=node, actor=staff, now=at(41))
    again = fleet.fleet_staff_action(pool=pool, action="resume", node=node, actor=staff, now=at(41))
    assert (again.ok, again.error) == (False, "The node is resuming now.")
    node.refresh_from_db()
    assert node.transition == NodeTransition.RESUMING  # the first resume only


def test_a_serving_node_is_not_stopped(staff):
    pool = managed_pool()
    node = hot_node(pool)
    assert fleet.node_acquire(pool_id=pool.pk, now=at(30)) == node.name
    decision = fleet.fleet_staff_action(
        pool=pool, action="stop", node=node, actor=staff, now=at(31)
    )
    assert (decision.ok, decision.error) == (False, "The node is serving now.")
    node.refresh_from_db()
    assert (node.state, node.transition) == (NodeState.SERVING, "")


def test_a_pool_without_a_policy_is_refused_with_a_message(staff):
    pool = make_pool("l4")
    decision = fleet.fleet_staff_action(pool=pool, action="rent", actor=staff, now=T0)
    assert (decision.ok, decision.error) == (False, "This pool is not managed by the fleet.")


def test_programming_errors_are_errors(staff):
    pool, other = managed_pool(), managed_pool("l4")
    node = hot_node(other)
    with pytest.raises(ValueError):
        fleet.fleet_staff_action(pool=pool, action="scale", actor=staff)
    with pytest.raises(ValueError):
        fleet.fleet_staff_action(pool=pool, action="stop", actor=staff)
    with pytest.raises(ValueError):
        fleet.fleet_staff_action(pool=pool, action="rent", node=node, actor=staff)
    with pytest.raises(ValueError):
        fleet.fleet_staff_action(pool=pool, action="stop", node=node, actor=staff)
    assert not ScalingDecision.objects.exists()


# --- fleet_overview ----------------------------------------------------------------------------


def test_overview_groups_nodes_by_state_with_counts_actions_and_recent_decisions(staff):
    pool = managed_pool()
    make_pool("unmanaged")  # no policy: not on the page
    warm = warm_node(pool)
    hot = hot_node(pool, at(22))
    renting = fleet.node_rent(pool=pool, now=at(50))
    serving = hot_node(pool, at(23))
    Node.objects.filter(pk=serving.pk).update(state=NodeState.SERVING)
    Node.objects.create(pool=pool, name="imported-1")  # not managed: not shown
    for i in range(35):
        fleet.fleet_staff_action(pool=pool, action="stop", node=warm, actor=staff, now=at(60 + i))

    [view] = fleet.fleet_overview(now=at(100))
    assert view.pool == pool and view.policy.pool_id == pool.pk
    assert [g.state for g in view.groups] == ["cold", "warm", "hot", "serving"]
    names = {g.state: [n.node.name for n in g.nodes] for g in view.groups}
    assert names == {
        "cold": [renting.name],
        "warm": [warm.name],
        "hot": [hot.name],
        "serving": [serving.name],
    }
    assert view.counts == {"cold": 1, "warm": 1, "hot": 1, "serving": 1}
    assert view.transitions == {"renting": 1}
    actions = {n.node.name: n.actions for n in view.nodes}
    assert actions[warm.name] == ("resume", "release")
    assert actions[hot.name] == ("stop", "release")
    assert actions[renting.name] == () and actions[serving.name] == ()
    assert len(view.decisions) == 30
    assert view.decisions[0].at == at(94)  # newest first
    assert view.decisions[0].decided_by == staff


def test_overview_takes_three_queries_whatever_the_fleet(staff, django_assert_num_queries):
    for slug in ("a100", "l4", "h100"):
        pool = managed_pool(slug)
        for minute in range(3):
            node = hot_node(pool, at(minute))
            fleet.fleet_staff_action(
                pool=pool, action="stop", node=node, actor=staff, now=at(30 + minute)
            )
    with django_assert_num_queries(3):
        views = fleet.fleet_overview(now=at(60))
        for view in views:
            for n in view.nodes:
                assert n.node.pool_id == view.pool.pk
            for d in view.decisions:
                assert d.node.name and d.decided_by.email
    assert [v.pool.slug for v in views] == ["a100", "h100", "l4"]
