"""What the autoscaler is told about a pool's queue. infra_costs knows no jobs: the caller
(operations, from generations' selectors) measures the queue and passes it in."""

from __future__ import annotations

from dataclasses import dataclass, field

# Queue tiers, highest first (a plan's `queue_priority`); PRIORITY_TIERS are those of the paid
# plans whose wait scales the pool at once (pro and above).
TIERS: tuple[str, ...] = ("dedicated", "highest", "high", "normal", "low")
PRIORITY_TIERS: frozenset[str] = frozenset({"dedicated", "highest", "high"})


@dataclass(frozen=True)
class QueueSignals:
    """One pool's queue at one instant: queued jobs and the oldest wait (seconds), per tier."""

    depth_by_tier: dict[str, int] = field(default_factory=dict)
    oldest_wait_s_by_tier: dict[str, float] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return sum(self.depth_by_tier.values())

    @property
    def oldest_wait_s(self) -> float:
        return max(self.oldest_wait_s_by_tier.values(), default=0.0)

    @property
    def priority_wait_s(self) -> float:
        """The oldest wait among pro-and-above jobs (0 when none waits)."""
        return max(
            (w for t, w in self.oldest_wait_s_by_tier.items() if t in PRIORITY_TIERS),
            default=0.0,
        )

    def as_dict(self) -> dict:
        return {
            "depth": self.depth,
            "depth_by_tier": dict(self.depth_by_tier),
            "oldest_wait_s_by_tier": {
                t: round(w, 1) for t, w in self.oldest_wait_s_by_tier.items()
            },
        }
