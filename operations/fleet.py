"""The fleet tick (beat task `operations.tasks.fleet_tick`, every FLEET_TICK_S): advance the
managed nodes' provider operations, give each managed pool one autoscaling decision from its
queue, and dispatch waiting jobs to free slots.

This is the one place that joins the two apps: generations measures the queue
(`generations.selectors.queue_signals`), infra_costs decides and acts on nodes
(`infra_costs.fleet`) — it knows no jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from generations.selectors import queue_signals
from generations.services import jobs_dispatch_waiting
from infra_costs import fleet
from infra_costs.models import NodePool, ScalingDecision


@dataclass
class TickResult:
    decisions: list[ScalingDecision] = field(default_factory=list)
    dispatched: int = 0

    def as_dict(self) -> dict:
        return {
            "decisions": [f"{d.pool.slug}: {d.action} ({d.reason})" for d in self.decisions],
            "dispatched": self.dispatched,
        }


def fleet_tick(*, now: datetime | None = None) -> TickResult:
    """One tick over every fleet-managed pool. Idempotent: a second tick at the same instant
    finds nothing left to do (operations already started, decisions already taken)."""
    now = now or timezone.now()
    result = TickResult()
    pools = list(NodePool.objects.filter(autoscale__enabled=True).order_by("slug"))
    if not pools:
        return result
    pool_ids = [p.pk for p in pools]
    fleet.fleet_advance(now=now, pool_ids=pool_ids)
    signals = queue_signals(pool_ids=pool_ids, now=now)
    for pool in pools:
        decision = fleet.pool_autoscale(
            pool=pool, signals=signals.get(pool.pk, fleet.QueueSignals()), now=now
        )
        if decision is not None:
            result.decisions.append(decision)
    if signals:
        result.dispatched = jobs_dispatch_waiting(pool_ids=sorted(signals))
    return result
