"""The unit-cost report of spec §5 from the raw aggregates: fully loaded cost (the pool's
unallocated cost shared by allocated cost), the idle policies, rounding to 6 decimal places
(largest remainder, so that Σ fully loaded + unattributed == infrastructure cost exactly) and
the warnings.

Per-generation costs that are not infrastructure (the model's external cost and its extra
pipeline stages, both from `infra_costs.registry`) are added per succeeded generation: they
enter `cost_per_generation_usd` and the weighted average, never the pools, the infrastructure
total or the invariant Σ fully loaded + unattributed == infrastructure cost."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from infra_costs.allocation.method import HOUR, ZERO, Raw
from infra_costs.allocation.windows import Inputs
from infra_costs.models import Node
from infra_costs.registry import Stage, external_costs_for, stage_costs_for, units_for

Q6 = Decimal("0.000001")


def q6(value: Decimal) -> Decimal:
    out = value.quantize(Q6, rounding=ROUND_HALF_UP)
    return out if out else abs(out)  # no "-0.000000"


def fmt(value: Decimal | None) -> str | None:
    return None if value is None else f"{q6(value):f}"


def apportion(values: list[Decimal], total: Decimal) -> list[Decimal]:
    """Round each value to 6 dp so that the rounded values sum to q6(total) (largest remainder;
    each rounded value is within 1e-6 of its exact value). Falls back to plain rounding when
    the values do not add up to the total."""
    target = q6(total)
    floors = [v.quantize(Q6, rounding=ROUND_FLOOR) for v in values]
    units = int(((target - sum(floors, ZERO)) / Q6).to_integral_value())
    if not 0 <= units <= len(values):
        return [q6(v) for v in values]
    order = sorted(range(len(values)), key=lambda k: (values[k] - floors[k], -k), reverse=True)
    out = list(floors)
    for k in order[:units]:
        out[k] += Q6
    return [v if v else abs(v) for v in out]


def _hours(secs: Decimal) -> Decimal:
    return secs / HOUR


def _div(a: Decimal, b: Decimal) -> Decimal | None:
    return None if not b else a / b


def assemble(
    inp: Inputs,
    raw: Raw,
    *,
    idle_policy: str,
    external: dict[str, Decimal] | None = None,
    stages: dict[str, list[Stage]] | None = None,
) -> dict[str, Any]:
    period = inp.period
    models = sorted(raw.counts)
    external_per_gen = external if external is not None else external_costs_for(models)
    stages_of = stages if stages is not None else stage_costs_for(models)
    units_of = units_for(models, period.start_at, period.end_at)
    node_names = dict(
        Node.objects.filter(id__in=[n for _, n, _ in raw.outside]).values_list("id", "name")
    )
    pool_ids = sorted(
        (p for p, r in raw.pools.items() if r.uptime_s or r.cost or r.jobs),
        key=lambda p: inp.pools.get(p, str(p)),
    )
    infra = sum((raw.pools[p].cost for p in pool_ids), ZERO)

    # Per model: allocated, fully loaded (exact).
    alloc: dict[str, Decimal] = defaultdict(Decimal)
    fully: dict[str, Decimal] = defaultdict(Decimal)
    active: dict[str, Decimal] = defaultdict(Decimal)
    gpu_s: dict[str, Decimal] = defaultdict(Decimal)
    active_on_pool: dict[int, Decimal] = defaultdict(Decimal)
    for (model, pool_id), mp in raw.model_pool.items():
        active[model] += mp.active
        gpu_s[model] += mp.weight_s
        active_on_pool[pool_id] += mp.active
    unattributed = ZERO
    pool_alloc_usd: dict[int, Decimal] = {}
    pool_unalloc_usd: dict[int, Decimal] = {}
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        on_pool = {m: mp for (m, p), mp in raw.model_pool.items() if p == pool_id}
        if idle_policy == "separate":
            pool_alloc_usd[pool_id] = active_on_pool[pool_id]
            pool_unalloc_usd[pool_id] = pool.cost - active_on_pool[pool_id]
            continue
        pool_alloc_usd[pool_id] = pool.allocated
        pool_unalloc_usd[pool_id] = pool.unallocated
        total_alloc = sum((mp.allocated for mp in on_pool.values()), ZERO)
        total_weight = sum((mp.weight_s for mp in on_pool.values()), ZERO)
        for model, mp in on_pool.items():
            alloc[model] += mp.allocated
            fully[model] += mp.allocated
            if total_alloc > 0:
                fully[model] += pool.unallocated * mp.allocated / total_alloc
            elif total_weight > 0:
                fully[model] += pool.unallocated * mp.weight_s / total_weight
        if total_alloc <= 0 and total_weight <= 0:
            unattributed += pool.unallocated
    if idle_policy == "separate":
        for model in models:
            alloc[model] = fully[model] = active[model]
        unattributed = infra - sum((fully[m] for m in models), ZERO)

    rounded = apportion([fully[m] for m in models] + [unattributed], infra)
    fully_r, unattributed_r = dict(zip(models, rounded[:-1], strict=True)), rounded[-1]

    gens_of = {m: raw.counts[m].get("succeeded", 0) for m in models}
    stage_lines = {m: [(s, s.cost(gens_of[m])) for s in stages_of.get(m, ())] for m in models}
    stage_cost = {m: sum((c for _, c in stage_lines[m]), ZERO) for m in models}
    total_stages = sum(stage_cost.values(), ZERO)
    stage_cost_r = dict(
        zip(models, apportion([stage_cost[m] for m in models], total_stages), strict=True)
    )

    model_rows = []
    total_gens = 0
    total_fully = ZERO
    total_external = ZERO
    for model in models:
        gens = gens_of[model]
        ext = external_per_gen.get(model, ZERO) * gens
        stage = stage_cost[model]
        total_gens += gens
        total_fully += fully[model]
        total_external += ext
        model_rows.append(
            {
                "model": model,
                "generations": gens,
                "failed": raw.counts[model].get("failed", 0),
                "gpu_hours": fmt(_hours(gpu_s[model])),
                "active_cost_usd": fmt(active[model]),
                "allocated_cost_usd": fmt(alloc[model]),
                "fully_loaded_cost_usd": fmt(fully_r[model]),
                "external_cost_usd": fmt(ext),
                "stage_cost_usd": fmt(stage_cost_r[model]),
                "cost_per_generation_usd": fmt(_div(fully[model] + ext + stage, Decimal(gens))),
                "active_cost_per_generation_usd": fmt(
                    _div(active[model] + ext + stage, Decimal(gens))
                ),
            }
        )
        if model in units_of:  # priced per unit: the cost per unit too (fully loaded)
            unit, units = units_of[model]
            model_rows[-1].update(
                {
                    "unit": unit,
                    "units": fmt(units),
                    "cost_per_unit_usd": fmt(_div(fully[model] + ext + stage, units)),
                }
            )

    pool_rows, idle_rows = [], []
    total_up = total_busy = ZERO
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        slug = inp.pools.get(pool_id, str(pool_id))
        idle_s = pool.uptime_s - pool.busy_s
        total_up += pool.uptime_s
        total_busy += pool.busy_s
        a_r, u_r = apportion([pool_alloc_usd[pool_id], pool_unalloc_usd[pool_id]], pool.cost)
        pool_rows.append(
            {
                "pool": slug,
                "uptime_hours": fmt(_hours(pool.uptime_s)),
                "busy_hours": fmt(_hours(pool.busy_s)),
                "idle_hours": fmt(_hours(idle_s)),
                "idle_fraction": fmt(_div(idle_s, pool.uptime_s)),
                "cost_usd": fmt(pool.cost),
                "allocated_usd": fmt(a_r),
                "unallocated_usd": fmt(u_r),
            }
        )
        if idle_policy == "separate":
            idle_rows.append(
                {
                    "pool": slug,
                    "idle_hours": fmt(_hours(idle_s)),
                    "idle_cost_usd": fmt(u_r),
                }
            )

    warnings = _warnings(inp, raw, pool_ids, node_names, pool_unalloc_usd, idle_policy)
    report: dict[str, Any] = {
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "start_at": period.start_at.isoformat(),
            "end_at": period.end_at.isoformat(),
            "timezone": period.timezone,
            "window": period.window,
            "windows": len(period.bounds) - 1,
            "idle_policy": idle_policy,
        },
        "pools": pool_rows,
        "models": model_rows,
        "totals": {
            "infra_cost_usd": fmt(infra),
            "generations": total_gens,
            "unattributed_usd": fmt(unattributed_r),
            "weighted_avg_cost_per_generation_usd": fmt(
                _div(total_fully + total_external + total_stages, Decimal(total_gens))
            ),
            "idle_fraction": fmt(_div(total_up - total_busy, total_up)),
            # Beside the infrastructure, never in it (nor in the invariant):
            "external_cost_usd": fmt(total_external),
            "stage_cost_usd": fmt(total_stages),
        },
        # The stage lines of every model (model, stage), beside the models table:
        "stages": [
            row
            for model in models
            for row in _stage_rows(model, gens_of[model], stage_lines[model], stage_cost_r[model])
        ],
        "warnings": warnings,
    }
    if idle_policy == "separate":
        report["idle"] = idle_rows
    return report


def _stage_rows(
    model: str, gens: int, lines: list[tuple[Stage, Decimal]], total_r: Decimal
) -> list[dict[str, Any]]:
    """A model's stage lines; their rounded costs add up to its rounded `stage_cost_usd`."""
    rounded = apportion([c for _, c in lines], total_r) if lines else []
    return [
        {
            "model": model,
            "stage": stage.name,
            "kind": stage.kind,
            "generations": gens,
            "cpu_seconds_per_generation": fmt(stage.cpu_seconds) if stage.kind == "cpu" else None,
            "cpu_hourly_usd": fmt(stage.cpu_hourly_usd) if stage.kind == "cpu" else None,
            "usd_per_generation": fmt(stage.usd_per_generation),
            "cost_usd": fmt(cost_r),
        }
        for (stage, _), cost_r in zip(lines, rounded, strict=True)
    ]


def _warnings(inp, raw, pool_ids, node_names, pool_unalloc, idle_policy) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for pool_id in sorted(inp.schedule_pools & set(pool_ids), key=lambda p: inp.pools[p]):
        slug = inp.pools[pool_id]
        out.append(
            {
                "code": "schedule_used",
                "pool": slug,
                "message": f"Pool {slug} has no recorded uptime in the period: its schedule "
                "(planned node-hours) was used.",
            }
        )
    for pool_id, node_id, secs in sorted(
        raw.outside, key=lambda o: (inp.pools.get(o[0], ""), node_names.get(o[1], str(o[1])))
    ):
        slug, node = inp.pools.get(pool_id, str(pool_id)), node_names.get(node_id, str(node_id))
        out.append(
            {
                "code": "job_outside_uptime",
                "pool": slug,
                "node": node,
                "seconds": fmt(secs),
                "message": f"Node {node} ({slug}) ran jobs for {q6(secs).normalize():f} s "
                "outside any uptime: they still weigh, but that time has no cost.",
            }
        )
    for pool_id in pool_ids:
        pool = raw.pools[pool_id]
        slug = inp.pools.get(pool_id, str(pool_id))
        if pool.unpriced_s > 0:
            out.append(
                {
                    "code": "no_rate",
                    "pool": slug,
                    "seconds": fmt(pool.unpriced_s),
                    "message": f"Pool {slug} has {q6(pool.unpriced_s).normalize():f} s of uptime "
                    "or jobs before its first rate: counted at $0.",
                }
            )
        if idle_policy == "separate" and pool_unalloc[pool_id] < 0:
            out.append(
                {
                    "code": "active_exceeds_cost",
                    "pool": slug,
                    "message": f"Jobs' active cost on pool {slug} exceeds its cost (jobs outside "
                    "uptime or running concurrently on one node): its idle line is negative.",
                }
            )
    return out
