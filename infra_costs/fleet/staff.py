"""Staff-driven fleet operations: rent a node for a pool, resume / stop / release one of its
nodes — from the staff fleet page (`/staff/fleet/`) or the Node admin.

Each is one durable transaction that holds the pool's policy row (as the autoscaler does, so a
staff action and an autoscaling step of the same pool never interleave), calls the lifecycle
(`infra_costs.fleet.lifecycle`) and records a `ScalingDecision` by the acting user, with the
pool's node counts as its inputs. What staff may reasonably run into — the provider refusing,
the node having moved on to another state, the pool at its maximum — is a decision with
`ok=False` and a message for people, never an exception.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from infra_costs.fleet import lifecycle
from infra_costs.fleet.autoscaler import FleetView
from infra_costs.models import (
    AutoscalePolicy,
    Node,
    NodePool,
    NodeState,
    NodeTransition,
    ScalingAction,
    ScalingDecision,
)

STAFF_ACTIONS: tuple[str, ...] = (
    ScalingAction.RENT,
    ScalingAction.RESUME,
    ScalingAction.STOP,
    ScalingAction.RELEASE,
)
NODE_ACTIONS: tuple[str, ...] = (ScalingAction.RESUME, ScalingAction.STOP, ScalingAction.RELEASE)


def _where(node: Node) -> str:
    """How a node is now, in words ("The node is <this> now.")."""
    if node.transition:
        return NodeTransition(node.transition).label.lower()
    return NodeState(node.state).label.lower()


def _inputs(view: FleetView, nodes: list[Node], pool: NodePool) -> dict:
    by_state = {state.value: 0 for state in NodeState}
    for n in nodes:
        by_state[n.state] = by_state.get(n.state, 0) + 1
    return {
        "hot": len(view.hot),
        "warm": len(view.warm),
        "renting": view.renting,
        "resuming": view.resuming,
        "leased": view.leased,
        "by_state": by_state,
        "min_nodes": pool.min_nodes,
    }


def fleet_staff_action(
    *,
    pool: NodePool,
    action: str,
    node: Node | None = None,
    actor,
    now: datetime | None = None,
) -> ScalingDecision:
    """Run one staff action on the pool and record it. `action` is one of STAFF_ACTIONS; the
    node actions (NODE_ACTIONS) need a node of this pool, rent takes none — anything else is
    a programming error (ValueError). The decision says whether it worked (`ok`, `error`)."""
    if action not in STAFF_ACTIONS:
        raise ValueError(f"Unknown staff action {action!r}")
    if (action in NODE_ACTIONS) != (node is not None):
        raise ValueError(f"{action} {'needs' if action in NODE_ACTIONS else 'takes no'} node")
    if node is not None and node.pool_id != pool.pk:
        raise ValueError("The node belongs to another pool")
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        policy = AutoscalePolicy.objects.select_for_update().filter(pool=pool).first()
        nodes = list(Node.objects.filter(pool=pool).exclude(provider="").order_by("id"))
        view = FleetView.of(pool)
        inputs = _inputs(view, nodes, pool)
        ok, error = True, ""
        try:
            if policy is None:
                ok, error = False, "This pool is not managed by the fleet."
            elif action == ScalingAction.RENT:
                if view.leased >= policy.max_nodes:
                    ok = False
                    error = f"The pool is at its maximum of {policy.max_nodes} nodes."
                else:
                    primaries = sum(n.is_primary for n in view.hot)
                    node = lifecycle.node_rent(
                        pool=pool, now=now, primary=primaries < pool.min_nodes
                    )
            elif not node.provider:
                ok, error = False, "This node is not managed by the fleet."
            else:
                operation = {
                    ScalingAction.RESUME: lifecycle.node_resume,
                    ScalingAction.STOP: lifecycle.node_stop,
                    ScalingAction.RELEASE: lifecycle.node_release,
                }[action]
                ok = operation(node=node, now=now)
                node.refresh_from_db()
                if not ok:
                    error = f"The node is {_where(node)} now."
                    busy = node.state == NodeState.HOT and not node.transition
                    if busy and action != ScalingAction.RESUME:
                        error = "The node is running jobs now."
        except lifecycle.ProviderRefused as exc:
            ok, error = False, exc.message
        except lifecycle.FleetError as exc:
            ok, error = False, exc.message
        return ScalingDecision.objects.create(
            pool=pool,
            at=now,
            action=action,
            node=node,
            reason=f"by {actor.email}"[:500],
            inputs=inputs,
            ok=ok,
            error=error[:500],
            decided_by=actor,
        )
