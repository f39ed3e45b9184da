"""The autoscaler: one decision per pool per tick, from the pool's queue (passed in — this
app knows no jobs), its nodes and its policy (`AutoscalePolicy`, editable in admin).

Rules, in order (the first that applies acts; at most one node operation per pool per tick):

1. **Floor** — fewer nodes hot or on their way than max(pool.min_nodes, the schedule's
   set-point in force): scale up.
2. **Priority wait** — a pro-or-above job has waited over `priority_wait_s` and no node is on
   its way: scale up now.
3. **Resume** — queue depth over `resume_queue_depth` with a warm standby and none resuming:
   resume the warm node stopped longest ago.
4. **Rent** — queue depth over `rent_queue_depth`, no warm standby left, none being rented:
   rent one (up to `max_nodes` leased).
5. **Stop** — the queue has stayed under `calm_queue_depth` for `calm_for_s` and the pool is
   above its floor: stop the oldest idle non-primary hot node (idle for `calm_for_s` too) to warm.
6. **Release** — a node warm for over `warm_release_after_s` is released, unless the capacity
   recommendation (hour-of-week demand of the last weeks) predicts more nodes in the next 24 h
   than are hot now.

"Scale up" resumes a warm node when there is one, else rents. Every action — and every wish
it could not fulfil (at the maximum, market refused) — is a `ScalingDecision` with the inputs
it saw and its reason; a repeated blocked wish is recorded once per `BLOCKED_REPEAT`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from infra_costs.fleet import lifecycle
from infra_costs.fleet.signals import QueueSignals
from infra_costs.models import (
    AutoscalePolicy,
    Node,
    NodePool,
    NodeState,
    NodeTransition,
    ScalingAction,
    ScalingDecision,
)
from infra_costs.schedule import active_set_points, pool_sizes

BLOCKED_REPEAT = timedelta(minutes=10)


@dataclass
class FleetView:
    """A pool's managed nodes by what the autoscaler cares about."""

    hot: list[Node]  # take work (hot or serving, nothing under way)
    warm: list[Node]  # warm and idle, stopped longest ago first
    renting: int
    resuming: int
    leased: int  # every node not cold (or being rented)

    @property
    def pending_up(self) -> int:
        return self.renting + self.resuming

    @classmethod
    def of(cls, pool: NodePool) -> FleetView:
        nodes = list(Node.objects.filter(pool=pool).exclude(provider="").order_by("id"))
        return cls(
            hot=[n for n in nodes if n.takes_work],
            warm=sorted(
                (n for n in nodes if n.state == NodeState.WARM and not n.transition),
                key=lambda n: (n.state_since is None, n.state_since, n.id),
            ),
            renting=sum(n.transition == NodeTransition.RENTING for n in nodes),
            resuming=sum(n.transition == NodeTransition.RESUMING for n in nodes),
            leased=sum(
                n.state != NodeState.COLD or n.transition == NodeTransition.RENTING for n in nodes
            ),
        )


def setpoint_now(pool: NodePool, now: datetime) -> int:
    """The node count of the pool's schedule in force at `now` (0 without set-points)."""
    set_points = list(active_set_points(pool, now))
    if not set_points:
        return 0
    return pool_sizes(set_points, now, now + timedelta(seconds=1), pool.timezone)[0][1]


def spike_predicted(pool: NodePool, now: datetime, hot: int) -> int | None:
    """The most nodes the capacity recommendation wants in the next 24 h, when that is more
    than `hot` (a spike is coming: keep warm standbys); None otherwise."""
    from zoneinfo import ZoneInfo

    from infra_costs.capacity import recommend_capacity

    rec = recommend_capacity(pool, now=now)
    if not rec.jobs:
        return None
    local = now.astimezone(ZoneInfo(rec.timezone))
    slot = local.weekday() * 24 + local.hour
    wanted = max(rec.nodes[(slot + h) % len(rec.nodes)] for h in range(24))
    return wanted if wanted > hot else None


def _idle_since(node: Node, now: datetime) -> datetime:
    """Since when the node has been hot and without work: the later of its last job's end and
    the moment it turned hot (a node just resumed is not idle for its past)."""
    marks = [t for t in (node.last_busy_at, node.state_since) if t is not None]
    return max(marks) if marks else now


def _decide(
    pool: NodePool,
    policy: AutoscalePolicy,
    view: FleetView,
    signals: QueueSignals,
    now: datetime,
    predict: Callable[[NodePool, datetime, int], int | None],
) -> tuple[str, Node | None, str] | None:
    """(action, node, reason) or None: what rule applies (see the module docstring)."""
    floor = max(pool.min_nodes, setpoint_now(pool, now))
    hot, depth = len(view.hot), signals.depth

    def up(reason: str) -> tuple[str, Node | None, str]:
        if view.warm:
            return ScalingAction.RESUME, view.warm[0], reason
        if view.leased < policy.max_nodes:
            return ScalingAction.RENT, None, reason
        return ScalingAction.BLOCKED, None, f"{reason}, but the pool is at its maximum"

    if hot + view.pending_up < floor:
        return up(f"{hot + view.pending_up} of the {floor} nodes the pool keeps hot")
    wait = signals.priority_wait_s
    if wait > policy.priority_wait_s and view.pending_up == 0:
        return up(f"a priority job has waited {wait:.0f} s")
    if depth > policy.resume_queue_depth and view.warm and view.resuming == 0:
        return ScalingAction.RESUME, view.warm[0], f"{depth} jobs queued"
    if depth > policy.rent_queue_depth and not view.warm and view.renting == 0:
        if view.leased < policy.max_nodes:
            return ScalingAction.RENT, None, f"{depth} jobs queued and no warm standby"
        return ScalingAction.BLOCKED, None, f"{depth} jobs queued, but the pool is at its maximum"
    calm_for = timedelta(seconds=policy.calm_for_s)
    if policy.calm_since is not None and now - policy.calm_since >= calm_for and hot > floor:
        idle = [
            n
            for n in view.hot
            if n.state == NodeState.HOT
            and not n.is_primary
            and _idle_since(n, now) <= now - calm_for
        ]
        if idle:
            oldest = min(idle, key=lambda n: (n.state_since or now, n.id))
            minutes = policy.calm_for_s // 60
            return (
                ScalingAction.STOP,
                oldest,
                f"queue under {policy.calm_queue_depth} for {minutes} min",
            )
    expired = [
        n
        for n in view.warm
        if n.state_since is not None
        and now - n.state_since > timedelta(seconds=policy.warm_release_after_s)
    ]
    if expired:
        wanted = predict(pool, now, hot)
        hours = policy.warm_release_after_s / 3600
        if wanted is None:
            return ScalingAction.RELEASE, expired[0], f"warm for over {hours:g} h, no spike ahead"
    return None


def pool_autoscale(
    *,
    pool: NodePool,
    signals: QueueSignals,
    now: datetime,
    predict: Callable[[NodePool, datetime, int], int | None] = spike_predicted,
) -> ScalingDecision | None:
    """One autoscaling step for the pool: decide, act, record. None when nothing is to be
    done (or the pool has no enabled policy). Serialised per pool by the policy's row lock."""
    with transaction.atomic():
        policy = AutoscalePolicy.objects.select_for_update().filter(pool=pool).first()
        if policy is None or not policy.enabled:
            return None
        calm = signals.depth < policy.calm_queue_depth
        calm_since = (policy.calm_since or now) if calm else None
        if calm_since != policy.calm_since:
            policy.calm_since = calm_since
            policy.save(update_fields=["calm_since"])
        view = FleetView.of(pool)
        decided = _decide(pool, policy, view, signals, now, predict)
        if decided is None:
            return None
        action, node, reason = decided
        inputs = {
            **signals.as_dict(),
            "hot": len(view.hot),
            "warm": len(view.warm),
            "renting": view.renting,
            "resuming": view.resuming,
            "leased": view.leased,
            "floor": max(pool.min_nodes, setpoint_now(pool, now)),
            "calm_since": policy.calm_since.isoformat() if policy.calm_since else None,
        }
        ok, error = True, ""
        if action == ScalingAction.BLOCKED:
            last = ScalingDecision.objects.filter(pool=pool).order_by("-at", "-id").first()
            if (
                last is not None
                and last.action == ScalingAction.BLOCKED
                and last.reason == reason
                and now - last.at < BLOCKED_REPEAT
            ):
                return None
            ok = False
        elif action == ScalingAction.RENT:
            primaries = sum(n.is_primary for n in view.hot)
            try:
                node = lifecycle.node_rent(pool=pool, now=now, primary=primaries < pool.min_nodes)
            except lifecycle.ProviderRefused as exc:
                ok, error = False, exc.message
        elif action == ScalingAction.RESUME:
            ok = lifecycle.node_resume(node=node, now=now)
        elif action == ScalingAction.STOP:
            ok = lifecycle.node_stop(node=node, now=now)
        elif action == ScalingAction.RELEASE:
            ok = lifecycle.node_release(node=node, now=now)
        if not ok and not error and action != ScalingAction.BLOCKED:
            error = "The node was no longer in a state to do that."
        return ScalingDecision.objects.create(
            pool=pool,
            at=now,
            action=action,
            node=node,
            reason=reason[:500],
            inputs=inputs,
            ok=ok,
            error=error[:500],
        )
