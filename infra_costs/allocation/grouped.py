"""Spec §3's allocation per *group of runs* instead of per model: the engine's weights grouped by
a key the caller gives each run (e.g. the organization of the job behind it), the same
`allocated(j) = Σ_w cost(p,w) · weight(j,w) / Σ_k weight(k,w)` summed per group, and the same
fully loaded rule (a pool's unallocated cost split among the groups that ran on it in
proportion to their allocated cost there, by weight if that is all zero; a pool with no
succeeded run leaves it unattributed).

infra_costs knows jobs only by `GpuRun.external_id`: the caller (a higher layer) fills a temp
table `(external_id text, grp text)` in its transaction and passes its name; runs not in it
form the group `UNGROUPED`. Because every succeeded run of the period is in exactly one group,
Σ over groups of fully loaded + unattributed == the infrastructure cost of the period, and
grouping by model gives the unit-cost report's per-model figures exactly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from django.db import transaction

from infra_costs.allocation.method import ZERO
from infra_costs.allocation.sql import UNGROUPED, raw_aggregates
from infra_costs.allocation.windows import gather_inputs
from infra_costs.periods import Period

__all__ = ["UNGROUPED", "GroupCost", "GroupedCosts", "grouped_costs"]


@dataclass
class GroupCost:
    allocated: Decimal = ZERO  # Σ allocated(j) of its succeeded runs
    fully_loaded: Decimal = ZERO  # + its share of the pools' unallocated cost
    gpu_seconds: Decimal = ZERO  # succeeded running seconds inside the period
    generations: int = 0  # succeeded runs
    failed: int = 0


@dataclass
class GroupedCosts:
    """Exact (unrounded) figures of one period."""

    groups: dict[str, GroupCost] = field(default_factory=dict)
    infra_cost: Decimal = ZERO
    allocated: Decimal = ZERO  # Σ pools' cost of windows with weight
    unallocated: Decimal = ZERO
    unattributed: Decimal = ZERO

    def fully_loaded(self, keys=None) -> Decimal:
        wanted = self.groups if keys is None else [k for k in keys if k in self.groups]
        return sum((self.groups[k].fully_loaded for k in wanted), ZERO)


def grouped_costs(period: Period, *, group_table: str) -> GroupedCosts:
    """Costs of `period` per group of runs (see the module doc). `group_table` must be a temp
    table of the current transaction (so call this inside `transaction.atomic()`)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("grouped_costs needs the caller's transaction (its temp table)")
    with localcontext() as ctx:
        ctx.prec = 50
        inp = gather_inputs(period)
        raw = raw_aggregates(inp, group_table=group_table)
        out = GroupedCosts()
        for key, counts in raw.counts.items():
            g = out.groups.setdefault(key, GroupCost())
            g.generations = counts.get("succeeded", 0)
            g.failed = counts.get("failed", 0)
        on_pool: dict[int, dict[str, Decimal]] = defaultdict(dict)
        weight_on_pool: dict[int, dict[str, Decimal]] = defaultdict(dict)
        for (key, pool_id), mp in raw.model_pool.items():
            g = out.groups.setdefault(key, GroupCost())
            g.allocated += mp.allocated
            g.fully_loaded += mp.allocated
            g.gpu_seconds += mp.weight_s
            on_pool[pool_id][key] = mp.allocated
            weight_on_pool[pool_id][key] = mp.weight_s
        for pool_id, pool in raw.pools.items():
            out.infra_cost += pool.cost
            out.allocated += pool.allocated
            out.unallocated += pool.unallocated
            total_alloc = sum(on_pool[pool_id].values(), ZERO)
            total_weight = sum(weight_on_pool[pool_id].values(), ZERO)
            if total_alloc > 0:
                for key, a in on_pool[pool_id].items():
                    out.groups[key].fully_loaded += pool.unallocated * a / total_alloc
            elif total_weight > 0:
                for key, w in weight_on_pool[pool_id].items():
                    out.groups[key].fully_loaded += pool.unallocated * w / total_weight
            else:
                out.unattributed += pool.unallocated
        return out
