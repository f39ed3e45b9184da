"""The FIFO replay (step 7): the window's runs served in arrival order by a capacity over
time, and their queue-wait statistics against the pool's SLA."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from infra_costs.capacity.cost import Steps
from infra_costs.capacity.demand import percentile_of
from infra_costs.capacity.units import US_PER_S


def replay(jobs: list[tuple[int, int]], steps: Steps) -> list[int | None]:
    """Queue waits (µs) of jobs `(arrival, duration)` — sorted by arrival — served FIFO, one
    node each, by a capacity that follows `steps` (the last size holds after the last step;
    0 before the first). None: the job never starts (no capacity ever again).

    O((jobs + steps) · log jobs): a heap of busy nodes' free times; a job starts at the first
    instant ≥ max(its arrival, the previous job's start) when fewer nodes are busy than the
    capacity; capacity cuts never stop running jobs."""
    times = [t for t, _ in steps]
    sizes = [n for _, n in steps]
    n_steps = len(steps)
    busy: list[int] = []
    waits: list[int | None] = []
    k = -1  # index of the step in force (−1: before the first, capacity 0)
    last_start = None
    for idx, (arrival, duration) in enumerate(jobs):
        t = arrival if last_start is None else max(arrival, last_start)
        while True:
            while k + 1 < n_steps and times[k + 1] <= t:
                k += 1
            while busy and busy[0] <= t:
                heapq.heappop(busy)
            if len(busy) < (sizes[k] if k >= 0 else 0):
                break
            candidates = []
            if busy:
                candidates.append(busy[0])
            if k + 1 < n_steps:
                candidates.append(times[k + 1])
            if not candidates:
                t = None
                break
            t = min(candidates)
        if t is None:  # FIFO: nothing after it starts either
            waits.extend([None] * (len(jobs) - idx))
            break
        heapq.heappush(busy, t + duration)
        last_start = t
        waits.append(t - arrival)
    return waits


@dataclass(frozen=True)
class ReplayStats:
    jobs: int
    p50_wait_s: Decimal | None
    p95_wait_s: Decimal | None
    share_over_sla: Decimal | None
    never_started: int = 0


def wait_stats(waits: list[int | None], sla_s: int) -> ReplayStats:
    if not waits:
        return ReplayStats(0, None, None, None)
    limit = sla_s * US_PER_S
    over = sum(1 for w in waits if w is None or w > limit)

    def secs(value) -> Decimal | None:
        if value is None:
            return None
        v = Fraction(value) / US_PER_S
        return Decimal(v.numerator) / Decimal(v.denominator)

    return ReplayStats(
        jobs=len(waits),
        p50_wait_s=secs(percentile_of(waits, 50)),
        p95_wait_s=secs(percentile_of(waits, 95)),
        share_over_sla=Decimal(over) / Decimal(len(waits)),
        never_started=sum(1 for w in waits if w is None),
    )
