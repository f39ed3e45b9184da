"""What each alert rule measures, and at which severity: reads only.

`measure(rules=, now=)` takes the enabled rules and returns one `Finding` per subject that fires
(a pool, or a node for node health) — subjects that are fine are simply absent. Every measure is
one set-based read over all pools or nodes (a fixed number of queries, however many pools):

- queue_depth: queued jobs per pool (`generations.selectors.queue_signals`), above thresholds;
- priority_wait: the oldest pro-or-above job's wait per pool, in seconds, above thresholds;
- node_health: managed nodes (`Node.provider` set) degraded (warning) or down (critical);
- gpu_utilization: busy ÷ uptime per pool over each threshold's own window
  (`infra_costs.fleet.selectors.pool_busy_fraction`), below thresholds; pools without uptime in
  a window are not judged on it;
- cost_per_day: each pool's cost so far in the UTC day (`fleet_cost_today`), above thresholds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property

from generations.selectors import queue_signals
from infra_costs.fleet.selectors import fleet_cost_today, pool_busy_fraction
from infra_costs.fleet.signals import QueueSignals
from infra_costs.models import Node, NodeHealth, NodePool
from operations.models import AlertRule, RuleKey, Severity

SIX_PLACES = Decimal("0.000001")
# node_health's value: what the node's health was when last seen.
HEALTH_VALUE = {NodeHealth.DEGRADED: Decimal(1), NodeHealth.DOWN: Decimal(2)}


@dataclass(frozen=True)
class Finding:
    rule: AlertRule
    subject: str  # "pool a100", "node a100-sim-2"
    severity: str  # Severity
    value: Decimal
    message: str  # "Pool a100: 34 jobs queued"


def severity_above(value: Decimal, rule: AlertRule) -> str | None:
    if value > rule.critical_threshold:
        return Severity.CRITICAL
    if value > rule.warning_threshold:
        return Severity.WARNING
    return None


def _dec(value) -> Decimal:
    return Decimal(str(value)).quantize(SIX_PLACES)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


class Reads:
    """What several rules read, read once per evaluation."""

    def __init__(self, *, now: datetime) -> None:
        self.now = now

    @cached_property
    def pools(self) -> dict[int, str]:
        return dict(NodePool.objects.values_list("id", "slug"))

    @cached_property
    def queues(self) -> dict[int, QueueSignals]:
        return queue_signals(now=self.now)


def queue_depth(rule: AlertRule, reads: Reads) -> list[Finding]:
    findings = []
    for pool_id, signals in reads.queues.items():
        value = Decimal(signals.depth)
        severity = severity_above(value, rule)
        if severity and pool_id in reads.pools:
            slug = reads.pools[pool_id]
            message = f"Pool {slug}: {_plural(signals.depth, 'job')} queued"
            findings.append(Finding(rule, f"pool {slug}", severity, value, message))
    return findings


def priority_wait(rule: AlertRule, reads: Reads) -> list[Finding]:
    findings = []
    for pool_id, signals in reads.queues.items():
        value = _dec(round(signals.priority_wait_s, 1))
        severity = severity_above(value, rule)
        if severity and pool_id in reads.pools:
            slug = reads.pools[pool_id]
            message = f"Pool {slug}: a priority job has waited {int(signals.priority_wait_s)} s"
            findings.append(Finding(rule, f"pool {slug}", severity, value, message))
    return findings


def node_health(rule: AlertRule, reads: Reads) -> list[Finding]:
    nodes = (
        Node.objects.exclude(provider="")
        .filter(health__in=[NodeHealth.DEGRADED, NodeHealth.DOWN])
        .values_list("name", "health", "pool_id")
        .order_by("name")
    )
    findings = []
    for name, health, pool_id in nodes:
        severity = Severity.CRITICAL if health == NodeHealth.DOWN else Severity.WARNING
        pool = reads.pools.get(pool_id, "?")
        message = f"Node {name} (pool {pool}) is {health}"
        findings.append(Finding(rule, f"node {name}", severity, HEALTH_VALUE[health], message))
    return findings


def gpu_utilization(rule: AlertRule, reads: Reads) -> list[Finding]:
    windows = {rule.warning_window_s, rule.critical_window_s}
    now = reads.now
    busy = {w: pool_busy_fraction(start=now - timedelta(seconds=w), end=now) for w in windows}
    warning, critical = busy[rule.warning_window_s], busy[rule.critical_window_s]
    findings = []
    for pool_id, slug in reads.pools.items():
        crit, warn = critical.get(pool_id), warning.get(pool_id)
        if crit is not None and crit < rule.critical_threshold:
            severity, value, window = Severity.CRITICAL, crit, rule.critical_window_s
        elif warn is not None and warn < rule.warning_threshold:
            severity, value, window = Severity.WARNING, warn, rule.warning_window_s
        else:
            continue
        message = f"Pool {slug}: GPUs {value * 100:.0f} % busy over the last {_duration(window)}"
        findings.append(Finding(rule, f"pool {slug}", severity, _dec(value), message))
    return findings


def cost_per_day(rule: AlertRule, reads: Reads) -> list[Finding]:
    findings = []
    for pool_id, usd in fleet_cost_today(now=reads.now).items():
        value = _dec(usd)
        severity = severity_above(value, rule)
        if severity and pool_id in reads.pools:
            slug = reads.pools[pool_id]
            message = f"Pool {slug}: ${value:.2f} spent today"
            findings.append(Finding(rule, f"pool {slug}", severity, value, message))
    return findings


MEASURES: dict[str, Callable[..., list[Finding]]] = {
    RuleKey.QUEUE_DEPTH: queue_depth,
    RuleKey.PRIORITY_WAIT: priority_wait,
    RuleKey.NODE_HEALTH: node_health,
    RuleKey.GPU_UTILIZATION: gpu_utilization,
    RuleKey.COST_PER_DAY: cost_per_day,
}


def measure(*, rules: list[AlertRule], now: datetime) -> list[Finding]:
    """The findings of the given (enabled) rules at `now`: at most one per (rule, subject)."""
    if not rules:
        return []
    reads = Reads(now=now)
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(MEASURES[rule.key](rule, reads))
    return findings
