"""The service: `recommend_capacity(pool, weeks=…, buffer=…, percentile=…)` → a
`Recommendation` (demand, nodes, set-points, cost per week, replay), by the steps of the
method in `infra_costs.capacity`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction

from django.utils import timezone as dj_timezone

from config.errors import NotFound, ValidationError
from infra_costs.capacity.cost import node_us, schedule_steps, weekly_cost
from infra_costs.capacity.data import rate_in_force, run_intervals, uptime_steps
from infra_costs.capacity.demand import (
    busy_per_hour,
    recommended_nodes,
    slot_demand,
    slot_mean,
    window_hours,
)
from infra_costs.capacity.fifo import ReplayStats, replay, wait_stats
from infra_costs.capacity.fit import fit_to_sla
from infra_costs.capacity.setpoints import SetPoint, as_models, compress
from infra_costs.capacity.units import US, US_PER_H
from infra_costs.models import NodePool
from infra_costs.periods import zone
from infra_costs.schedule import active_set_points

MAX_WEEKS = 52
DEFAULT_WEEKS = 4
DEFAULT_BUFFER = Decimal("0.2")
DEFAULT_PERCENTILE = Decimal(90)
FITS = ("sla", "percentile")  # sla: trimmed to the SLA by the replay (fit.py); percentile: §3 only
DEFAULT_FIT = "sla"
MAX_MIN_NODES = 1000
# Replayed capacity is known up to one week past the window (queues drain into it); after
# that the last size holds.
REPLAY_TAIL = timedelta(days=7)


@dataclass
class Recommendation:
    pool: NodePool
    start_at: datetime
    end_at: datetime
    weeks: int
    buffer: Decimal
    percentile: Decimal
    min_nodes: int
    timezone: str
    jobs: int  # runs overlapping the window
    replayed: int  # runs started in the window
    demand: list[Fraction]  # per slot, busy nodes
    nodes: list[int]  # per slot (after the fit)
    set_points: list[SetPoint]
    rate: Decimal | None
    current_basis: str  # "schedule" | "uptime" | "none"
    current_node_hours_per_week: Decimal
    recommended_node_hours_per_week: Decimal
    current_cost_usd: Decimal | None
    recommended_cost_usd: Decimal | None
    savings_fraction: Decimal | None
    replay: dict[str, ReplayStats] = field(default_factory=dict)
    fit: str = DEFAULT_FIT
    formula_nodes: list[int] = field(default_factory=list)  # per slot, §3's formula alone
    mean_demand: list[Fraction] = field(default_factory=list)  # per slot, busy nodes
    fit_replays: int = 0
    current_steps: list[tuple[int, int]] = field(default_factory=list)  # capacity over time


def _decimal(value, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(
            f"{name} must be a number.", errors={name: ["Not a number."]}
        ) from None
    if not out.is_finite():
        raise ValidationError(f"{name} must be a number.", errors={name: ["Not a number."]})
    return out


def recommend_capacity(
    pool: str | NodePool,
    *,
    weeks: int = DEFAULT_WEEKS,
    buffer: Decimal | str | float = DEFAULT_BUFFER,
    percentile: Decimal | str | float = DEFAULT_PERCENTILE,
    end: date | None = None,
    now: datetime | None = None,
    fit: str = DEFAULT_FIT,
    min_nodes: int | None = None,
) -> Recommendation:
    if not isinstance(pool, NodePool):
        slug = pool
        pool = NodePool.objects.filter(slug=slug).first()
        if pool is None:
            known = ", ".join(NodePool.objects.values_list("slug", flat=True)) or "none"
            raise NotFound(f"Unknown pool {slug!r} (known pools: {known}).")
    if not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
        raise ValidationError(
            f"weeks must be an integer from 1 to {MAX_WEEKS}.",
            errors={"weeks": [f"From 1 to {MAX_WEEKS}."]},
        )
    buffer = _decimal(buffer, "buffer")
    if buffer < 0:
        raise ValidationError("buffer must be ≥ 0.", errors={"buffer": ["Must be ≥ 0."]})
    p = _decimal(percentile, "percentile")
    if not 0 <= p <= 100:
        raise ValidationError(
            "percentile must be from 0 to 100.", errors={"percentile": ["From 0 to 100."]}
        )
    if fit not in FITS:
        raise ValidationError(
            "fit must be sla or percentile.", errors={"fit": ["Choose sla or percentile."]}
        )
    tz = zone(pool.timezone or "UTC")
    now = now or dj_timezone.now()
    end_day = end or now.astimezone(UTC).date()
    end_at = datetime.combine(end_day, time.min, tzinfo=UTC)
    start_at = end_at - timedelta(weeks=weeks)
    horizon = end_at + REPLAY_TAIL
    window_us = (end_at - start_at) // US

    intervals = run_intervals(pool, start_at, end_at)
    replay_jobs = [(s, max(0, e - s)) for s, e in intervals if s >= 0]
    if not replay_jobs:
        raise ValidationError(
            f"No jobs of pool {pool.slug!r} started in the window "
            f"{start_at:%Y-%m-%d} → {end_at:%Y-%m-%d} ({weeks} weeks): nothing to recommend from.",
            errors={"pool": ["No jobs in the window."]},
        )

    # Demand → nodes per slot → set-points.
    hours = window_hours(start_at, end_at, tz)
    busy_us = busy_per_hour(intervals, hours.bounds)
    demand = slot_demand(hours, busy_us, p)
    mean = slot_mean(hours, busy_us)
    if min_nodes is None:
        min_nodes = pool.min_nodes if pool.min_nodes is not None else 1
    elif not isinstance(min_nodes, int) or not 0 <= min_nodes <= MAX_MIN_NODES:
        raise ValidationError(
            f"min_nodes must be an integer from 0 to {MAX_MIN_NODES}.",
            errors={"min_nodes": [f"From 0 to {MAX_MIN_NODES}."]},
        )
    formula_nodes = [recommended_nodes(d, Fraction(buffer), min_nodes) for d in demand]
    tz_name = pool.timezone or "UTC"

    def steps_of(per_slot: list[int]):
        models = as_models(compress(per_slot, tz_name), pool)
        return schedule_steps(models, start_at, horizon, pool.timezone)

    sla = pool.sla_queue_wait_s
    nodes, fit_replays = formula_nodes, 0
    if fit == "sla":
        nodes, fit_replays = fit_to_sla(
            formula_nodes,
            mean,
            min_nodes,
            sla,
            lambda per_slot: wait_stats(replay(replay_jobs, steps_of(per_slot)), sla),
            demand=demand,
        )
    set_points = compress(nodes, tz_name)

    # Capacities: current (schedule, or measured uptime without one) and recommended.
    current_sps = list(active_set_points(pool))
    if current_sps:
        basis = "schedule"
        current = schedule_steps(current_sps, start_at, horizon, pool.timezone)
    else:
        measured = uptime_steps(pool, start_at, end_at)
        basis = "uptime" if measured else "none"
        current = measured or [(0, 0)]
    recommended = schedule_steps(as_models(set_points, pool), start_at, horizon, pool.timezone)

    rate = rate_in_force(pool, now)
    cur_us, rec_us = node_us(current, window_us), node_us(recommended, window_us)
    current_cost = weekly_cost(cur_us, weeks, rate)
    recommended_cost = weekly_cost(rec_us, weeks, rate)
    savings = None
    if current_cost and recommended_cost is not None:
        with localcontext() as ctx:
            ctx.prec = 60
            savings = 1 - recommended_cost / current_cost

    per_week = Decimal(US_PER_H) * weeks
    return Recommendation(
        pool=pool,
        start_at=start_at,
        end_at=end_at,
        weeks=weeks,
        buffer=buffer,
        percentile=p,
        min_nodes=min_nodes,
        timezone=pool.timezone or "UTC",
        jobs=len(intervals),
        replayed=len(replay_jobs),
        demand=demand,
        nodes=nodes,
        set_points=set_points,
        rate=rate,
        current_basis=basis,
        current_node_hours_per_week=Decimal(cur_us) / per_week,
        recommended_node_hours_per_week=Decimal(rec_us) / per_week,
        current_cost_usd=current_cost,
        recommended_cost_usd=recommended_cost,
        savings_fraction=savings,
        replay={
            "current": wait_stats(replay(replay_jobs, current), sla),
            "recommended": wait_stats(replay(replay_jobs, recommended), sla),
        },
        fit=fit,
        formula_nodes=formula_nodes,
        mean_demand=mean,
        fit_replays=fit_replays,
        current_steps=current,
    )
