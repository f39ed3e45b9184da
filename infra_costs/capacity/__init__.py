"""Capacity recommendation (predictive scaling), spec §3:

    rec = recommend_capacity("a100", weeks=4, buffer=Decimal("0.2"))
    as_json(rec)  # the JSON of `manage.py recommend_capacity --format json`

The method:

1. **Window**: the `weeks` weeks before `end` (a UTC date, exclusive; default: today, so the
   window ends at the start of the current UTC day).
2. **Busy node-hours per hour**: every run of the pool that overlaps the window (all statuses:
   a running GPU is busy whatever the outcome; a run still `running` is busy until the window
   ends) adds its seconds inside each local clock hour of the pool's time zone. An hour's
   *busy nodes* = busy seconds / the hour's length (3600 s). The repeated local hour of an
   autumn DST change is one observation of two hours; the skipped spring hour is none.
3. **Demand per hour-of-week** (168 slots, Monday 00:00 first, local time): a high percentile
   (p90 by default) of that slot's observations across the weeks — linear interpolation
   between the closest ranks (numpy's default, Excel's PERCENTILE.INC).
4. **Recommended nodes** per slot: `max(min_nodes, ceil(demand · (1 + buffer)))`, exactly
   (demand is a Fraction, never a float).
4b. **Fit to the SLA** (`fit="sla"`, the default; `fit="percentile"` stops at step 4): trim
   the least loaded slots' nodes (never to their mean load or below `min_nodes`) for as long
   as the replay of step 7 keeps the p95 wait within the pool's SLA (`fit.py`).
5. **Set-points**: the slots where the weekly sequence changes (cyclically: Sunday 23:00 →
   Monday 00:00 counts) become firings `0 H * * D` in the pool's time zone; firings of one
   hour and node count are merged over days (`0 8 * * 1-5`), then over hours. A constant
   recommendation is one set-point `0 0 * * *`. Expanding them with
   `infra_costs.schedule.pool_sizes` gives back the per-slot recommendation.
6. **Cost per week**: the node-hours of a capacity over the window ÷ weeks (an average week)
   × the hourly rate in force now. *Current*: the pool's active set-points expanded with
   `pool_sizes` over the window; a pool without set-points is measured by its recorded/
   imported uptime in the window instead (basis `uptime`). *Recommended*: the recommended
   set-points expanded the same way. `savings_fraction = 1 − recommended / current`
   (negative when the recommendation costs more; null when the current cost is 0).
7. **Replay** (FIFO per pool): every run that *started* in the window arrives at its
   `started_at` (imported history has no enqueue time) and needs its running time on one
   node. Runs are served in arrival order by the capacity in force at each instant (a heap
   of busy nodes' free times; capacity changes at set-point firings; when the capacity drops
   below the busy nodes, running jobs finish and new ones wait). Each run's queue wait →
   p50/p95 (linear interpolation) and the share of runs waiting longer than the pool's SLA.
   A run that could never start (capacity 0 for good) counts as over the SLA, and a
   percentile that falls on such runs is null.

Money is exact Decimal (6 dp when shown); waits are microsecond integers, shown in seconds.

The package, one step per module: `demand` (busy node-hours per local hour → demand per
hour-of-week, the exact math), `setpoints` (per-slot node counts ↔ cron set-points), `data`
(reads: runs, measured uptime, the rate in force), `fit` (step 4b), `services` (apply as a
schedule version), `cost` (capacity over time → node-hours
and cost per week), `fifo` (the replay and its wait statistics), `recommend` (the service,
`recommend_capacity`) and `formatting` (table and JSON).
"""

from infra_costs.capacity.formatting import as_dict, as_json, as_table
from infra_costs.capacity.recommend import (
    DEFAULT_BUFFER,
    DEFAULT_PERCENTILE,
    DEFAULT_WEEKS,
    MAX_WEEKS,
    Recommendation,
    recommend_capacity,
)

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_PERCENTILE",
    "DEFAULT_WEEKS",
    "MAX_WEEKS",
    "Recommendation",
    "as_dict",
    "as_json",
    "as_table",
    "recommend_capacity",
]
