"""Fit to the SLA (step 4b): trim the spec's per-slot node counts where the replay shows the
head-room is not needed, as long as the replayed p95 queue wait stays within the pool's SLA.

The spec's formula `ceil(demand · (1 + buffer))` puts the same relative buffer on every
hour-of-week. Where the load per node is low, a node less changes nothing anyone waits for;
where it is high, the buffer is what keeps the queue short. So:

1. Candidates: each slot may lose nodes down to `min_nodes`, one level at a time, but never to
   a count at or below its *mean* load (busy nodes averaged over the weeks): such a slot would
   be overloaded on an average week. A level's key is the mean load per node it leaves; the
   least loaded levels come first.
2. Trim the first *k* candidates, for the largest *k* whose replay keeps p95 ≤ SLA (binary
   search over *k*: about log2(candidates) replays, each O(jobs · log jobs)). If the untrimmed
   counts already miss the SLA, nothing is trimmed.

The replay is the one of step 7 (FIFO, arrival = started_at), on the same weeks' jobs: the fit
is in-sample. The first step's percentile and buffer stay the starting point, so a higher
percentile or buffer still means more head-room where it matters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

from infra_costs.capacity.fifo import ReplayStats

ROUNDS = 1  # more rounds (skip the breaking level, search on) bought nothing on the demo


def candidates(
    nodes: list[int], demand: list[Fraction], mean: list[Fraction], min_nodes: int
) -> list[tuple[int, int]]:
    """(slot, count after the trim) levels, least loaded first — by the slot's demand (the
    percentile) per node left — ties: earlier slot first. A level never leaves a slot at or
    below its mean load."""
    out: list[tuple[Fraction, int, int]] = []
    for slot, (n, load, high) in enumerate(zip(nodes, mean, demand, strict=True)):
        floor = max(min_nodes, math.floor(load) + 1)
        for count in range(n - 1, floor - 1, -1):
            out.append((Fraction(high) / count if count else Fraction(0), slot, count))
    out.sort()
    return [(slot, count) for _key, slot, count in out]


def trimmed(nodes: list[int], levels: list[tuple[int, int]]) -> list[int]:
    out = list(nodes)
    for slot, count in levels:
        out[slot] = min(out[slot], count)
    return out


def within(stats: ReplayStats, sla_s: int) -> bool:
    return stats.p95_wait_s is not None and stats.p95_wait_s <= sla_s


def fit_to_sla(
    nodes: list[int],
    mean: list[Fraction],
    min_nodes: int,
    sla_s: int,
    evaluate: Callable[[list[int]], ReplayStats],
    demand: list[Fraction] | None = None,
    rounds: int = ROUNDS,
) -> tuple[list[int], int]:
    """The trimmed per-slot counts and how many replays it took."""
    levels = candidates(nodes, demand if demand is not None else mean, mean, min_nodes)
    replays = 1
    if not levels or not within(evaluate(nodes), sla_s):
        return list(nodes), replays
    current = list(nodes)
    for _ in range(rounds):
        lo, hi = 0, len(levels)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            replays += 1
            if within(evaluate(trimmed(current, levels[:mid])), sla_s):
                lo = mid
            else:
                hi = mid - 1
        current = trimmed(current, levels[:lo])
        # The level that broke the SLA is skipped; the next round tries the ones after it.
        levels = levels[lo + 1 :]
        if not levels:
            break
    return current, replays
