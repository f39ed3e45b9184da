"""The demand math (steps 2–4): busy node-hours per local clock hour of the window, the
high percentile per hour-of-week across the weeks, and nodes = max(min_nodes,
ceil(demand · (1 + buffer))). Exact: ints and Fractions, never floats."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from infra_costs.capacity.units import SLOTS, US


def percentile_of(values: list, p: Fraction | Decimal | int) -> Any:
    """The p-th percentile (0–100) of `values` by linear interpolation between closest ranks
    (numpy's default). Exact for ints/Fractions. None for no values or when it touches a None
    (an infinite value), which sorts last."""
    if not values:
        return None
    inf = [v for v in values if v is None]
    ordered = sorted(v for v in values if v is not None) + inf
    pos = Fraction(p) / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    frac = pos - lo
    a = ordered[lo]
    if frac == 0:
        return a
    b = ordered[lo + 1]
    if a is None or b is None:
        return None
    return a + (b - a) * frac


def recommended_nodes(demand: Fraction, buffer: Fraction, min_nodes: int) -> int:
    return max(min_nodes, math.ceil(Fraction(demand) * (1 + Fraction(buffer))))


@dataclass(frozen=True)
class Hours:
    """The window cut at local clock hours: `bounds` (µs since the window start, first 0,
    last the window length) and, per hour, its observation index; `slot` per observation."""

    bounds: list[int]
    obs_of_hour: list[int]
    slot_of_obs: list[int]
    length_of_obs: list[int]


def window_hours(start_at: datetime, end_at: datetime, tz) -> Hours:
    step = timedelta(minutes=15)  # every UTC offset in use is a multiple of 15 minutes
    bounds_at = [start_at]
    t = start_at + step
    while t < end_at:
        local = t.astimezone(tz)
        if local.minute == 0:
            bounds_at.append(t)
        t += step
    bounds_at.append(end_at)
    keys: dict[tuple[date, int], int] = {}
    obs_of_hour: list[int] = []
    slot_of_obs: list[int] = []
    length_of_obs: list[int] = []
    for a, b in itertools.pairwise(bounds_at):
        local = a.astimezone(tz)
        key = (local.date(), local.hour)
        if key not in keys:
            keys[key] = len(slot_of_obs)
            slot_of_obs.append(local.weekday() * 24 + local.hour)
            length_of_obs.append(0)
        k = keys[key]
        obs_of_hour.append(k)
        length_of_obs[k] += (b - a) // US
    bounds = [(b - start_at) // US for b in bounds_at]
    return Hours(bounds, obs_of_hour, slot_of_obs, length_of_obs)


def busy_per_hour(intervals: list[tuple[int, int]], bounds: list[int]) -> list[int]:
    """Σ over intervals (µs, relative to the window start) of their µs inside each hour."""
    busy = [0] * (len(bounds) - 1)
    last = bounds[-1]
    for s, e in intervals:
        s, e = max(s, 0), min(e, last)
        if e <= s:
            continue
        i = bisect_right(bounds, s) - 1
        while s < e:
            edge = bounds[i + 1]
            if e <= edge:
                busy[i] += e - s
                break
            busy[i] += edge - s
            s = edge
            i += 1
    return busy


def slot_samples(hours: Hours, busy_us: list[int]) -> list[list[Fraction]]:
    """Per hour-of-week slot, its observations' busy nodes (one per week, usually)."""
    obs_busy = [0] * len(hours.slot_of_obs)
    for h, us in enumerate(busy_us):
        obs_busy[hours.obs_of_hour[h]] += us
    samples: list[list[Fraction]] = [[] for _ in range(SLOTS)]
    for k, slot in enumerate(hours.slot_of_obs):
        length = hours.length_of_obs[k]
        if length:
            samples[slot].append(Fraction(obs_busy[k], length))
    return samples


def slot_demand(hours: Hours, busy_us: list[int], p: Fraction | Decimal | int) -> list[Fraction]:
    """Per hour-of-week slot, the p-th percentile of its observations' busy nodes."""
    return [percentile_of(s, p) or Fraction(0) for s in slot_samples(hours, busy_us)]


def slot_mean(hours: Hours, busy_us: list[int]) -> list[Fraction]:
    """Per hour-of-week slot, the mean of its observations' busy nodes (0 without any)."""
    return [
        sum(s, Fraction(0)) / len(s) if s else Fraction(0) for s in slot_samples(hours, busy_us)
    ]
