"""Unit costs: spec §3's allocation of infrastructure cost to models, per period.

    report = unit_cost_report(date(2026, 1, 5), date(2026, 1, 8), window="day")

The method (fixed by the spec — external checks recompute the same numbers):

* The period `[start, end)` (local dates of `timezone`) is cut into windows: local days or
  hours. Windows are further cut at rate changes into *slices*, so a rate is constant within
  a slice.
* Uptime: per node, the union of its intervals (overlaps count once), clipped to the period.
  A pool with uptime in the period is measured by it; a pool without uses its schedule
  (`infra_costs.schedule`); a pool with neither has no uptime.
* Jobs of the period: GPU runs that *finished* in `[start, end)`, clipped to start at the
  period's start. Succeeded, failed and cancelled runs are busy time; only succeeded ones weigh.
* Per pool and window: `cost` = Σ over rate kinds of uptime seconds of that kind × that kind's
  rate / 3600 (`on_demand`: the hourly rate; `spot`: the spot rate, else the hourly rate;
  `warm`: the warm rate, else $0 — `method.kind_rate`); `busy` = Σ per node of the union of its
  jobs ∩ its uptime (all kinds); per model `weight` = its succeeded jobs' seconds in the window.
  A model's `allocated` = Σ_w cost · weight / Σ weight; a window's cost with no weight is the
  pool's *unallocated* cost.
* Fully loaded = allocated + the pool's unallocated cost split by the models' allocated cost
  on the pool (by their weight if that is all zero); a pool with no succeeded job in the
  period leaves its unallocated cost *unattributed*.
* Active cost = a succeeded job's seconds × the hourly (on-demand) rate (no idle). Idle
  policy `separate`: models get their active cost only; each pool's rest (idle, failed jobs)
  is one idle line.

The engine is set-based SQL on PostgreSQL (`sql.raw_aggregates`: temp tables, window
functions, `width_bucket` over the slice boundaries; no loop over jobs). Money is exact
decimal throughout; reported figures are rounded to 6 decimal places (largest remainder, so
that Σ fully loaded + unattributed == infrastructure cost holds exactly in the report).

The package, one step per module:

* `windows` — the period's slices (windows cut at rate changes), pools, planned uptime;
* `sql` — data access: the exact per-slice aggregates, computed by PostgreSQL;
* `method` — the allocation math over those aggregates (cost, allocated, active);
* `assembly` — the report: fully loaded cost, rounding, warnings;
* `compute` — the entry point, `unit_cost_report`.

The pure-Python engine survives only as the tests' oracle (`tests/infra_costs/reference.py`).
"""

from infra_costs.allocation.compute import IDLE_POLICIES, parse_idle_policy, unit_cost_report

__all__ = ["IDLE_POLICIES", "parse_idle_policy", "unit_cost_report"]
