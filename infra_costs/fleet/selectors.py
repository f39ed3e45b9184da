"""Reads about the fleet for operations (metrics, alerts): what the pools cost so far and how busy
their GPUs were, straight from PostgreSQL, one set-based statement each.

Uptime here is what the pools are billed for: recorded or imported `UptimeInterval`s plus the
open billing of managed nodes (`Node.billing_since` set: billed at `Node.billing_kind` since
then). These are operational gauges, not the unit-cost report (`infra_costs.allocation`):
overlapping intervals of one node are not merged and pools without measured uptime get no
schedule-based estimate.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db import connection

from infra_costs.models import GpuRun, Node, NodePool, PoolRate, RateKind, UptimeInterval

HOUR = Decimal(3600)

# Per pool: Σ seconds × the rate of the interval's kind in force at its (clipped) start. Open
# billing of managed nodes is one more interval, from billing_since to `now`.
_COST_SQL = """
WITH iv AS (
    SELECT pool_id, rate_kind AS kind,
           greatest(started_at, %(start)s) AS s, least(ended_at, %(end)s) AS e
    FROM {uptime} WHERE started_at < %(end)s AND ended_at > %(start)s
    UNION ALL
    SELECT pool_id, billing_kind, greatest(billing_since, %(start)s), least(%(now)s, %(end)s)
    FROM {node}
    WHERE provider <> '' AND billing_since IS NOT NULL
      AND billing_since < least(%(now)s, %(end)s) AND %(now)s > %(start)s
)
SELECT p.id, coalesce(c.usd_s, 0) FROM {pool} p LEFT JOIN (
SELECT iv.pool_id, sum(extract(epoch FROM iv.e - iv.s) * coalesce(
    CASE iv.kind
        WHEN %(warm)s THEN r.warm_hourly_rate_usd
        WHEN %(spot)s THEN coalesce(r.spot_hourly_rate_usd, r.hourly_rate_usd)
        ELSE r.hourly_rate_usd
    END, 0)) AS usd_s
FROM iv
LEFT JOIN LATERAL (
    SELECT hourly_rate_usd, warm_hourly_rate_usd, spot_hourly_rate_usd FROM {rate}
    WHERE pool_id = iv.pool_id AND effective_from <= iv.s
    ORDER BY effective_from DESC LIMIT 1
) r ON true
WHERE iv.e > iv.s
GROUP BY iv.pool_id
) c ON c.pool_id = p.id
"""

# Per pool: running (not warm) uptime seconds in the window, and run seconds in the window.
_BUSY_SQL = """
SELECT p.id,
    (SELECT sum(extract(epoch FROM least(u.ended_at, %(end)s) - greatest(u.started_at, %(start)s)))
     FROM {uptime} u
     WHERE u.pool_id = p.id AND u.started_at < %(end)s AND u.ended_at > %(start)s
       AND u.rate_kind <> %(warm)s),
    (SELECT sum(extract(epoch FROM %(end)s - greatest(n.billing_since, %(start)s)))
     FROM {node} n
     WHERE n.pool_id = p.id AND n.provider <> '' AND n.billing_since < %(end)s
       AND n.billing_kind <> %(warm)s),
    (SELECT sum(extract(epoch FROM least(coalesce(g.finished_at, %(end)s), %(end)s)
                                   - greatest(g.started_at, %(start)s)))
     FROM {run} g
     WHERE g.pool_id = p.id AND g.started_at < %(end)s
       AND (g.finished_at > %(start)s OR g.finished_at IS NULL))
FROM {pool} p
"""


def _tables(sql: str) -> str:
    return sql.format(
        uptime=UptimeInterval._meta.db_table,
        node=Node._meta.db_table,
        rate=PoolRate._meta.db_table,
        run=GpuRun._meta.db_table,
        pool=NodePool._meta.db_table,
    )


def fleet_cost(*, start: datetime, end: datetime, now: datetime) -> dict[int, Decimal]:
    """Pool id → USD billed in [start, end) as far as known at `now`: uptime intervals clipped to
    the window × the rate of their `rate_kind` (on demand: the hourly rate; spot: the spot rate,
    else the hourly; warm: the warm rate, else 0) in force at their clipped start, plus the open
    billing of managed nodes from `billing_since` to `now`. Every pool is present (0 when
    nothing was billed). One query."""
    with connection.cursor() as cursor:
        cursor.execute(
            _tables(_COST_SQL),
            {
                "start": start,
                "end": end,
                "now": now,
                "warm": RateKind.WARM.value,
                "spot": RateKind.SPOT.value,
            },
        )
        rows = cursor.fetchall()
    return {pool_id: Decimal(usd_s) / HOUR for pool_id, usd_s in sorted(rows)}


def fleet_cost_today(*, now: datetime) -> dict[int, Decimal]:
    """Pool id → USD billed so far in the UTC day of `now` (see `fleet_cost`)."""
    day_start = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return fleet_cost(start=day_start, end=day_start + timedelta(days=1), now=now)


def pool_busy_fraction(*, start: datetime, end: datetime) -> dict[int, Decimal | None]:
    """Pool id → busy ÷ uptime over [start, end); None when the pool had no uptime there.

    uptime: seconds of the pool's uptime intervals clipped to the window plus the open billing of
    its managed nodes from `billing_since` to `end` (pass an `end` no later than now), leaving out
    warm time (a stopped node has no GPU to keep busy). busy: Σ of its runs' seconds
    [started_at, finished_at or `end`) clipped to the window — concurrent runs each count —
    capped at the uptime. One query; every pool is present."""
    with connection.cursor() as cursor:
        cursor.execute(
            _tables(_BUSY_SQL), {"start": start, "end": end, "warm": RateKind.WARM.value}
        )
        rows = cursor.fetchall()
    fractions: dict[int, Decimal | None] = {}
    for pool_id, uptime_s, billing_s, busy_s in sorted(rows):
        uptime = Decimal(uptime_s or 0) + Decimal(billing_s or 0)
        if uptime <= 0:
            fractions[pool_id] = None
            continue
        fractions[pool_id] = min(Decimal(busy_s or 0), uptime) / uptime
    return fractions


# --- The staff fleet page: pools, their nodes by state, the last decisions --------------------
# (imports of this section kept here: the section above is another area's)

from dataclasses import dataclass, field  # noqa: E402

from django.db.models import F, Window  # noqa: E402
from django.db.models.functions import RowNumber  # noqa: E402

from infra_costs.models import (  # noqa: E402
    AutoscalePolicy,
    NodeState,
    ScalingAction,
    ScalingDecision,
)

DECISIONS_SHOWN = 30


def node_actions(node: Node) -> tuple[str, ...]:
    """The staff actions a managed node's state allows now: resume or release a warm node,
    stop or release a hot one; none while an operation is under way, serving or cold."""
    if not node.provider or node.transition:
        return ()
    if node.state == NodeState.WARM:
        return (ScalingAction.RESUME, ScalingAction.RELEASE)
    if node.state == NodeState.HOT:
        return (ScalingAction.STOP, ScalingAction.RELEASE)
    return ()


@dataclass(frozen=True)
class FleetNodeView:
    node: Node
    actions: tuple[str, ...]


@dataclass(frozen=True)
class StateGroup:
    state: str
    label: str
    nodes: list[FleetNodeView]


@dataclass
class PoolFleetView:
    """One managed pool for the staff fleet page."""

    pool: NodePool
    policy: AutoscalePolicy
    groups: list[StateGroup]  # every state, cold → serving
    counts: dict[str, int]  # state → nodes
    transitions: dict[str, int] = field(default_factory=dict)  # operation under way → nodes
    decisions: list[ScalingDecision] = field(default_factory=list)  # newest first

    @property
    def nodes(self) -> list[FleetNodeView]:
        return [n for g in self.groups for n in g.nodes]


def fleet_overview(*, now: datetime, decisions: int = DECISIONS_SHOWN) -> list[PoolFleetView]:
    """Every pool with an autoscale policy (enabled or not), by slug: its managed nodes grouped
    by state (primary first, then by name), the counts per state and per operation under way,
    and its last `decisions` scaling decisions. Three queries whatever the fleet's size. `now`
    is the instant the page describes (kept for callers that show ages against it)."""
    policies = list(AutoscalePolicy.objects.select_related("pool").order_by("pool__slug"))
    if not policies:
        return []
    pool_ids = [p.pool_id for p in policies]
    nodes: dict[int, list[Node]] = {pid: [] for pid in pool_ids}
    for node in (
        Node.objects.filter(pool_id__in=pool_ids)
        .exclude(provider="")
        .order_by("-is_primary", "name")
    ):
        nodes[node.pool_id].append(node)
    recent: dict[int, list[ScalingDecision]] = {pid: [] for pid in pool_ids}
    rows = (
        ScalingDecision.objects.filter(pool_id__in=pool_ids)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("pool_id")], order_by=[F("at").desc(), F("id").desc()]
            )
        )
        .filter(rank__lte=decisions)
        .select_related("node", "decided_by")
        .order_by("pool_id", "-at", "-id")
    )
    for decision in rows:
        recent[decision.pool_id].append(decision)
    views = []
    for policy in policies:
        pool_nodes = nodes[policy.pool_id]
        groups = [
            StateGroup(
                state=state.value,
                label=state.label,
                nodes=[FleetNodeView(n, node_actions(n)) for n in pool_nodes if n.state == state],
            )
            for state in NodeState
        ]
        transitions: dict[str, int] = {}
        for n in pool_nodes:
            if n.transition:
                transitions[n.transition] = transitions.get(n.transition, 0) + 1
        views.append(
            PoolFleetView(
                pool=policy.pool,
                policy=policy,
                groups=groups,
                counts={g.state: len(g.nodes) for g in groups},
                transitions=transitions,
                decisions=recent[policy.pool_id],
            )
        )
    return views
