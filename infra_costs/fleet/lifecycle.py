"""The node lifecycle — the one module that moves managed nodes between states and writes the
uptime they are billed for.

    cold ──rent──▶ (renting) ──▶ hot ◀──▶ serving
                                  │ ▲
                             stop │ │ resume
                                  ▼ │
    cold ◀──(releasing)──release── warm

Provider operations take time (`infra_costs.fleet.providers`): a node in transition takes no
work; `fleet_advance` (the fleet tick) polls the provider and completes or fails them.

**Uptime records itself.** A node is billed at one rate kind at a time (`Node.billing_kind`
since `Node.billing_since`): the hourly rate — on-demand or spot — from the moment a rent or a
resume is requested until it is stopped or released, the warm rate while it is stopped but
leased, nothing while cold. Every change of kind closes the open interval into an
`UptimeInterval` (source `recorded`, `rate_kind` of the state), and the fleet tick closes it at
each UTC hour boundary too, so reports lag the present by under an hour. Idle hot time is
uptime without runs: it shows up as idle in the unit-cost report.

Every function here runs inside the caller's transaction (or its own) with the node's row
locked, and is a no-op when the node is not in the state the operation starts from — so a
repeated tick or a duplicate task changes nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef

from infra_costs.fleet.providers import Provider, ProviderRefused, get_provider
from infra_costs.models import (
    AutoscalePolicy,
    CapacityType,
    GpuRun,
    Node,
    NodeEvent,
    NodeHealth,
    NodePool,
    NodeState,
    NodeTransition,
    RateKind,
    RunStatus,
    UptimeInterval,
    UptimeSource,
)

__all__ = [
    "FleetError",
    "ProviderRefused",
    "fleet_advance",
    "free_slots",
    "node_acquire",
    "node_free",
    "node_join",
    "node_release",
    "node_rent",
    "node_resume",
    "node_stop",
    "pool_managed",
    "pool_policy",
]

RUNNING = (NodeState.HOT, NodeState.SERVING)


class FleetError(Exception):
    """An operation asked of a node in the wrong state (staff actions report it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def pool_policy(pool_id: int) -> AutoscalePolicy | None:
    """The pool's enabled fleet policy: the pool is managed when it has one."""
    return AutoscalePolicy.objects.filter(pool_id=pool_id, enabled=True).first()


def pool_managed(pool_ref: str) -> Exists:
    """`pool_policy(…) is not None` as an expression of the caller's query, over its column
    `pool_ref` (a pool id): the caller's own SELECT answers it, with no round trip of its own
    (the worker's claim, issue 16)."""
    return Exists(AutoscalePolicy.objects.filter(pool_id=OuterRef(pool_ref), enabled=True))


def _provider(pool_id: int) -> tuple[AutoscalePolicy, Provider]:
    policy = AutoscalePolicy.objects.filter(pool_id=pool_id).first()
    if policy is None:
        raise FleetError("This pool has no fleet policy.")
    return policy, get_provider(policy.provider, policy.provider_config)


def _running_kind(node: Node) -> str:
    return RateKind.SPOT if node.capacity_type == CapacityType.SPOT else RateKind.ON_DEMAND


def _close_billing(node: Node, until: datetime) -> None:
    if node.billing_kind and node.billing_since is not None and until > node.billing_since:
        UptimeInterval.objects.get_or_create(
            node=node,
            started_at=node.billing_since,
            ended_at=until,
            defaults={
                "pool_id": node.pool_id,
                "source": UptimeSource.RECORDED,
                "rate_kind": node.billing_kind,
            },
        )


def _bill(node: Node, kind: str, now: datetime) -> None:
    """From `now` on the node is billed at `kind` ("" = nothing): the open interval closes."""
    if node.billing_kind == kind:
        return
    _close_billing(node, now)
    node.billing_kind = kind
    node.billing_since = now if kind else None


def _event(node: Node, now: datetime, message: str) -> None:
    NodeEvent.objects.create(
        node=node, at=now, state=node.state, transition=node.transition, message=message[:500]
    )


def _locked(node: Node | int) -> Node:
    pk = node.pk if isinstance(node, Node) else node
    return Node.objects.select_for_update().select_related("pool").get(pk=pk)


def _has_running_jobs(node: Node) -> bool:
    return GpuRun.objects.filter(node=node, status=RunStatus.RUNNING).exists()


def _minutes(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    return f"{minutes} min" if minutes else "under a minute"


def _new_name(pool: NodePool) -> str:
    taken = set(Node.objects.filter(pool=pool).values_list("name", flat=True))
    n = 1
    while f"{pool.slug}-{n}" in taken or Node.objects.filter(name=f"{pool.slug}-{n}").exists():
        n += 1
    return f"{pool.slug}-{n}"


@transaction.atomic
def node_rent(*, pool: NodePool, now: datetime, primary: bool = False) -> Node:
    """Lease a new node for the pool (→ renting → hot). Reuses the name of a released (cold)
    node of the pool when there is one. Raises ProviderRefused when the market has none."""
    policy, provider = _provider(pool.pk)
    node = (
        Node.objects.select_for_update(skip_locked=True)
        .filter(pool=pool, provider=policy.provider, state=NodeState.COLD, transition="")
        .order_by("id")
        .first()
    )
    name = node.name if node else _new_name(pool)
    op = provider.rent(
        pool_slug=pool.slug, node_name=name, capacity_type=policy.capacity_type, now=now
    )
    if node is None:
        node = Node(pool=pool, name=name, state=NodeState.COLD, state_since=now)
    node.provider = policy.provider
    node.provider_ref = op.ref
    node.capacity_type = policy.capacity_type
    node.slots = policy.node_slots
    node.is_primary = primary
    node.health = NodeHealth.OK
    node.transition = NodeTransition.RENTING
    node.transition_ready_at = op.ready_at
    _bill(node, _running_kind(node), now)
    node.save()
    _event(node, now, f"rent requested: set up and model loaded in {_minutes(op.ready_at - now)}")
    return node


@transaction.atomic
def node_resume(*, node: Node, now: datetime) -> bool:
    """Start a warm node (→ resuming → hot). False when it is not warm and idle."""
    node = _locked(node)
    if node.state != NodeState.WARM or node.transition:
        return False
    _, provider = _provider(node.pool_id)
    op = provider.resume(node=node, now=now)
    node.transition = NodeTransition.RESUMING
    node.transition_ready_at = op.ready_at
    _bill(node, _running_kind(node), now)
    node.save()
    _event(node, now, f"resume requested: hot in {_minutes(op.ready_at - now)}")
    return True


@transaction.atomic
def node_stop(*, node: Node, now: datetime) -> bool:
    """Stop an idle hot node to warm, keeping the lease. False when it is serving, in
    transition or not hot. It takes no work from this moment on."""
    node = _locked(node)
    if node.state != NodeState.HOT or node.transition or _has_running_jobs(node):
        return False
    _, provider = _provider(node.pool_id)
    op = provider.stop(node=node, now=now)
    node.transition = NodeTransition.STOPPING
    node.transition_ready_at = op.ready_at
    node.save()
    _event(node, now, "stop requested")
    return True


@transaction.atomic
def node_release(*, node: Node, now: datetime) -> bool:
    """Give a warm (or idle hot) node back to the provider (→ releasing → cold)."""
    node = _locked(node)
    if node.state not in (NodeState.WARM, NodeState.HOT) or node.transition:
        return False
    if node.state == NodeState.HOT and _has_running_jobs(node):
        return False
    _, provider = _provider(node.pool_id)
    op = provider.release(node=node, now=now)
    node.transition = NodeTransition.RELEASING
    node.transition_ready_at = op.ready_at
    node.save()
    _event(node, now, "release requested")
    return True


def _complete(node: Node, now: datetime, *, failed: bool, why: str) -> None:
    """A node's operation finished (or failed): its new state and billing."""
    kind = node.transition
    node.transition = NodeTransition.NONE
    node.transition_ready_at = None
    if kind == NodeTransition.RENTING:
        if failed:
            node.state = NodeState.COLD
            _bill(node, "", now)
            message = f"rent failed: {why}"
        else:
            node.state = NodeState.HOT
            message = "rented and hot"
    elif kind == NodeTransition.RESUMING:
        if failed:
            node.state = NodeState.WARM
            _bill(node, RateKind.WARM, now)
            message = f"resume failed: {why}"
        else:
            node.state = NodeState.HOT
            message = "resumed and hot"
    elif kind == NodeTransition.STOPPING:
        node.state = NodeState.WARM
        _bill(node, RateKind.WARM, now)
        message = "stopped to warm"
    else:  # releasing
        node.state = NodeState.COLD
        _bill(node, "", now)
        message = "released"
    node.state_since = now
    node.health = NodeHealth.OK
    node.save()
    _event(node, now, message)


def _checkpoint(node: Node, now: datetime) -> bool:
    """Close the open interval at the last UTC hour boundary, so reports see recorded uptime
    up to the last hour without waiting for the next state change."""
    if not node.billing_kind or node.billing_since is None:
        return False
    boundary = now.replace(minute=0, second=0, microsecond=0)
    if node.billing_since >= boundary:
        return False
    _close_billing(node, boundary)
    node.billing_since = boundary
    return True


def fleet_advance(*, now: datetime, pool_ids: list[int] | None = None) -> list[int]:
    """The fleet tick: complete the operations the provider says are done, record health,
    close open uptime at hour boundaries, and put back to `hot` a `serving` node whose jobs
    all ended. Returns the pools that gained a node that takes work (to dispatch to)."""
    nodes = Node.objects.exclude(provider="")
    if pool_ids is not None:
        nodes = nodes.filter(pool_id__in=pool_ids)
    nodes = nodes.exclude(state=NodeState.COLD, transition="")
    gained: set[int] = set()
    providers: dict[int, Provider | None] = {}
    for node_id in nodes.values_list("id", flat=True):
        with transaction.atomic():
            node = Node.objects.select_for_update(skip_locked=True).filter(pk=node_id).first()
            if node is None or not node.provider:
                continue
            if node.pool_id not in providers:
                try:
                    providers[node.pool_id] = _provider(node.pool_id)[1]
                except FleetError:
                    providers[node.pool_id] = None
            provider = providers[node.pool_id]
            if provider is None:
                continue
            status = provider.status(node=node, now=now)
            dirty = False
            if node.transition and status.phase in ("done", "failed"):
                ready = node.transition_ready_at or now
                done_at = min(max(ready, node.billing_since or ready), now)
                _complete(node, done_at, failed=status.phase == "failed", why=status.message)
                if node.takes_work:
                    gained.add(node.pool_id)
            elif not node.transition and status.health != node.health:
                node.health = status.health
                dirty = True
                _event(node, now, f"health {status.health}: {status.message}".rstrip(": "))
            running = GpuRun.objects.filter(node=node, status=RunStatus.RUNNING).count()
            if running != node.running_jobs:  # a slot lost with a crashed path: re-counted
                node.running_jobs = running
                dirty = True
            if node.state == NodeState.SERVING and not running:
                node.state = NodeState.HOT
                dirty = True
                gained.add(node.pool_id)
            dirty = _checkpoint(node, now) or dirty
            if dirty:
                node.save()
    return sorted(gained)


def node_acquire(*, pool_id: int, now: datetime) -> str | None:
    """Take a slot on a node of the pool that takes work (hot or serving, no operation under
    way, `running_jobs < slots`) and mark it serving; None when every node is busy or none is
    hot. One conditional UPDATE: concurrent callers skip each other's locked rows, and a row
    changed since the statement began is re-checked on its new version, so two callers never
    share a slot. Runs in the caller's transaction, which records the job's GPU run."""
    node_t = Node._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""
            UPDATE {node_t} SET state = 'serving', last_busy_at = %(now)s,
                                running_jobs = running_jobs + 1
            WHERE id = (
                SELECT n.id FROM {node_t} n
                WHERE n.pool_id = %(pool)s AND n.provider <> '' AND n.transition = ''
                  AND n.state IN ('hot', 'serving') AND n.running_jobs < n.slots
                ORDER BY n.is_primary DESC, n.state_since NULLS LAST, n.id
                LIMIT 1 FOR UPDATE SKIP LOCKED
            ) AND running_jobs < slots AND transition = ''
            RETURNING name
            """,
            {"pool": pool_id, "now": now},
        )
        row = cur.fetchone()
    return row[0] if row else None


def node_free(*, node_name: str, now: datetime) -> int | None:
    """A job on the node ended (in the caller's transaction): its slot is given back and the
    node goes back to `hot` when nothing else runs on it. Returns the node's pool id when the
    node is managed (the caller dispatches the pool's waiting jobs), else None."""
    node_t = Node._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"""
            UPDATE {node_t} SET
                running_jobs = greatest(running_jobs - 1, 0),
                state = CASE WHEN state = 'serving' AND running_jobs <= 1 THEN 'hot'
                             ELSE state END,
                last_busy_at = %(now)s
            WHERE name = %(name)s AND provider <> ''
            RETURNING pool_id
            """,
            {"name": node_name, "now": now},
        )
        row = cur.fetchone()
    return row[0] if row else None


def node_join(*, node_name: str, jobs: int) -> None:
    """`jobs` more jobs joined a batch running on the node (each gives its slot back with
    `node_free` when it ends). No-op for a node the fleet does not manage."""
    Node.objects.filter(name=node_name).exclude(provider="").update(
        running_jobs=F("running_jobs") + jobs
    )


def free_slots(*, pool_ids: list[int]) -> dict[int, int]:
    """Per managed pool with a node that takes work, its free job slots."""
    if not pool_ids:
        return {}
    rows = (
        Node.objects.filter(pool_id__in=pool_ids, transition="", state__in=RUNNING)
        .exclude(provider="")
        .values_list("pool_id", "slots", "running_jobs")
    )
    free: dict[int, int] = {}
    for pool_id, slots, running in rows:
        free[pool_id] = free.get(pool_id, 0) + max(0, slots - running)
    return free
