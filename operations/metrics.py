"""Prometheus metrics (`GET /metrics`, spec §7; docs/operations.md "Metrics").

`FleetCollector` reads every value from PostgreSQL at scrape time — queues, nodes, GPU busy
fraction, jobs, credits and today's cost — with a handful of set-based queries (one per family
group, whatever the number of pools or jobs). Nothing is counted in process memory, so the
exposition is multi-process safe under gunicorn by construction: any worker answers the same
scrape with the same numbers, and a restarted worker loses nothing. The collector lives in its
own `CollectorRegistry` (not prometheus_client's global one, which would add per-process
Python/GC metrics that differ between workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from credits.selectors import credit_totals
from generations.models import Job, JobStatus
from generations.selectors import queue_signals
from infra_costs.fleet.selectors import fleet_cost_today, pool_busy_fraction
from infra_costs.fleet.signals import TIERS, QueueSignals
from infra_costs.models import Node, NodeHealth, NodePool, NodeState, NodeTransition

PREFIX = "gpucredits_"
BUSY_WINDOW = timedelta(hours=1)

STATES: tuple[str, ...] = tuple(NodeState.values)
TRANSITIONS: tuple[str, ...] = tuple(t for t in NodeTransition.values if t)
HEALTHS: tuple[str, ...] = tuple(NodeHealth.values)
JOB_STATUSES: tuple[str, ...] = tuple(JobStatus.values)


@dataclass(frozen=True)
class NodeCounts:
    """Managed nodes of one pool: per state, per transition under way, per health (leased:
    every state but cold)."""

    by_state: dict[str, int]
    by_transition: dict[str, int]
    by_health: dict[str, int]


def managed_node_counts() -> dict[int, NodeCounts]:
    """Pool id → counts of its managed nodes (`provider` set), in one grouped query."""
    rows = (
        Node.objects.exclude(provider="")
        .values("pool_id", "state", "transition", "health")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[int, NodeCounts] = {}
    for row in rows:
        c = counts.setdefault(row["pool_id"], NodeCounts({}, {}, {}))
        state, transition, health, n = row["state"], row["transition"], row["health"], row["n"]
        c.by_state[state] = c.by_state.get(state, 0) + n
        if transition:
            c.by_transition[transition] = c.by_transition.get(transition, 0) + n
        if state != NodeState.COLD:
            c.by_health[health] = c.by_health.get(health, 0) + n
    return counts


def job_counts() -> dict[str, int]:
    """Job status → number of jobs, in one grouped query (statuses without jobs absent)."""
    rows = Job.objects.values("status").annotate(n=Count("id")).order_by()
    return {row["status"]: row["n"] for row in rows}


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


class FleetCollector(Collector):
    """Every metric, from the database at scrape time (see the module docstring). `now` pins
    the clock (tests); by default each scrape uses the current time."""

    def __init__(self, *, now: datetime | None = None) -> None:
        self._now = now

    def collect(self) -> Iterator[Metric]:
        now = self._now or timezone.now()
        pools = list(NodePool.objects.order_by("slug").values_list("id", "slug"))
        yield from self._queues(pools, queue_signals(now=now))
        yield from self._nodes(pools, managed_node_counts())
        yield from self._busy(pools, pool_busy_fraction(start=now - BUSY_WINDOW, end=now))
        yield from self._jobs(job_counts())
        yield from self._credits()
        yield from self._cost(pools, fleet_cost_today(now=now))

    def _queues(
        self, pools: list[tuple[int, str]], signals: dict[int, QueueSignals]
    ) -> Iterable[Metric]:
        depth = _gauge("queue_depth", "Jobs queued now, per pool and plan tier.", ["pool", "tier"])
        wait = _gauge(
            "queue_oldest_wait_seconds",
            "Seconds the oldest queued job has waited, per pool and plan tier (0: none queued).",
            ["pool", "tier"],
        )
        for pool_id, slug in pools:
            signal = signals.get(pool_id) or QueueSignals()
            for tier in TIERS:
                depth.add_metric([slug, tier], signal.depth_by_tier.get(tier, 0))
                wait.add_metric([slug, tier], signal.oldest_wait_s_by_tier.get(tier, 0.0))
        return depth, wait

    def _nodes(self, pools: list[tuple[int, str]], counts: dict[int, NodeCounts]):
        nodes = _gauge("nodes", "Managed nodes per pool and state.", ["pool", "state"])
        moving = _gauge(
            "nodes_in_transition",
            "Managed nodes with a provider operation under way (they take no work).",
            ["pool", "transition"],
        )
        health = _gauge(
            "node_health",
            "Leased managed nodes (any state but cold) per last reported health.",
            ["pool", "health"],
        )
        empty = NodeCounts({}, {}, {})
        for pool_id, slug in pools:
            c = counts.get(pool_id, empty)
            for state in STATES:
                nodes.add_metric([slug, state], c.by_state.get(state, 0))
            for transition in TRANSITIONS:
                moving.add_metric([slug, transition], c.by_transition.get(transition, 0))
            for h in HEALTHS:
                health.add_metric([slug, h], c.by_health.get(h, 0))
        return nodes, moving, health

    def _busy(self, pools: list[tuple[int, str]], fractions: dict[int, Decimal | None]):
        busy = _gauge(
            "gpu_busy_fraction",
            "Over the last hour: run seconds ÷ running uptime seconds (0 without uptime).",
            ["pool"],
        )
        for pool_id, slug in pools:
            busy.add_metric([slug], float(fractions.get(pool_id) or 0))
        return (busy,)

    def _jobs(self, counts: dict[str, int]):
        jobs = _gauge("jobs", "Generation jobs per status.", ["status"])
        for status in JOB_STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        return (jobs,)

    def _credits(self):
        totals = credit_totals()
        held = _gauge("credits_held", "Credits in open holds (jobs accepted, not yet charged).", [])
        held.add_metric([], float(totals.held))
        captured = CounterMetricFamily(
            PREFIX + "credits_captured", "Credits captured (charged) since the start.", labels=[]
        )
        captured.add_metric([], float(totals.captured))
        return held, captured

    def _cost(self, pools: list[tuple[int, str]], cost: dict[int, Decimal]):
        usd = _gauge(
            "cost_usd_today",
            "Infrastructure cost so far in the current UTC day, per pool (USD).",
            ["pool"],
        )
        for pool_id, slug in pools:
            usd.add_metric([slug], float(cost.get(pool_id, Decimal(0))))
        return (usd,)


def registry(*, now: datetime | None = None) -> CollectorRegistry:
    """A registry holding only the fleet collector (never prometheus_client's global one)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FleetCollector(now=now))
    return reg


REGISTRY = registry()


def exposition(*, now: datetime | None = None) -> bytes:
    """The metrics in Prometheus text format."""
    return generate_latest(REGISTRY if now is None else registry(now=now))
