"""What the staff fleet page (`/staff/fleet/`, `operations.views.fleet`) shows, read in a fixed
number of queries: each managed pool's nodes by state and last decisions
(`infra_costs.fleet.fleet_overview`), its queue per tier (`generations.selectors.queue_signals`)
and what it has cost so far today (`infra_costs.fleet.selectors.fleet_cost_today`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from generations.selectors import queue_signals
from infra_costs import fleet
from infra_costs.fleet.selectors import PoolFleetView, fleet_cost_today
from infra_costs.fleet.signals import TIERS, QueueSignals
from infra_costs.models import ScalingDecision

# The inputs a decision summary names, in this order, with their words.
_INPUT_WORDS = (
    ("depth", "queued"),
    ("hot", "hot"),
    ("warm", "warm"),
    ("renting", "renting"),
    ("resuming", "resuming"),
    ("leased", "leased"),
    ("floor", "floor"),
)
_SHOWN_WHEN_NONZERO = frozenset({"renting", "resuming"})


@dataclass(frozen=True)
class TierQueue:
    tier: str
    depth: int
    oldest_wait_s: float

    @property
    def oldest_wait(self) -> str:
        """ "45 s", "12 min", "3.5 h" — how long its oldest job has waited."""
        s = self.oldest_wait_s
        if s < 120:
            return f"{s:.0f} s"
        if s < 7200:
            return f"{s / 60:.0f} min"
        return f"{s / 3600:.1f} h"


@dataclass(frozen=True)
class DecisionRow:
    decision: ScalingDecision
    inputs: str  # a one-line summary of what it saw


@dataclass
class FleetPoolPanel:
    view: PoolFleetView
    queue: QueueSignals
    tiers: list[TierQueue]  # tiers with jobs queued, highest first
    cost_today_usd: Decimal
    decisions: list[DecisionRow]

    @property
    def pool(self):
        return self.view.pool


def inputs_summary(inputs: dict) -> str:
    """ "queued 12 · hot 2 · warm 1 · leased 3" — the counts a decision saw (empty: —)."""
    parts = [
        f"{word} {inputs[key]}"
        for key, word in _INPUT_WORDS
        if isinstance(inputs.get(key), int)
        and not isinstance(inputs.get(key), bool)
        and (inputs[key] or key not in _SHOWN_WHEN_NONZERO)
    ]
    return " · ".join(parts) or "—"


def fleet_page(*, now: datetime) -> list[FleetPoolPanel]:
    """Every managed pool, by slug, for the staff fleet page at `now`. Five queries."""
    views = fleet.fleet_overview(now=now)
    if not views:
        return []
    signals = queue_signals(pool_ids=[v.pool.pk for v in views], now=now)
    costs = fleet_cost_today(now=now)
    panels = []
    for view in views:
        queue = signals.get(view.pool.pk, QueueSignals())
        tiers = [
            TierQueue(tier, queue.depth_by_tier[tier], queue.oldest_wait_s_by_tier.get(tier, 0.0))
            for tier in TIERS
            if queue.depth_by_tier.get(tier)
        ]
        panels.append(
            FleetPoolPanel(
                view=view,
                queue=queue,
                tiers=tiers,
                cost_today_usd=costs.get(view.pool.pk, Decimal(0)),
                decisions=[DecisionRow(d, inputs_summary(d.inputs)) for d in view.decisions],
            )
        )
    return panels
