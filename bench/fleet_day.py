#!/usr/bin/env python
"""Fleet autoscaling vs the static schedule: one day of the demo's demand replayed through the
real autoscaler on the simulated provider, time compressed (issue 11).

Demand. Per pool of the demo catalog (`generations.demo`), the expected busy node-seconds of
each hour of the day are those of the demo's history generator — its daily shape (busy 09-18,
moderate 07-23, quiet at night) on the nodes its schedule keeps up — and the arrivals per hour
are that divided by the pool's mean service time, times `--scale`. Arrivals are a Poisson
process within each hour; each picks a model by the catalog's shares and a lognormal service
time of that model's mean and sigma, and a tier by `--mix` (free/low, starter/normal,
creator/high, studio/highest). A seeded RNG (`--seed`): a run is repeatable.

Autoscaler run (real rows in the bench's database). Each pool gets an `AutoscalePolicy` (the
defaults of issue 11) on the simulated provider with its default delays (rent + setup 30-60 min,
resume 2-5 min, model load 60 s) and a warm rate (`--warm-fraction` of the hourly rate: the demo
catalog has none). The initial fleet, leased before the day starts through the lifecycle
services: the pool's minimum of hot primary nodes plus one warm standby. With `--floor min`
(default) the schedule's set-points are inactive, so the autoscaler's floor is the pool's
minimum; `--floor schedule` keeps them as its floor. A discrete-event loop moves the clock
(time_machine) from event to event:
  * every 30 s of simulated time, `operations.fleet.fleet_tick(now=)`;
  * an arrival is `generations.services.generation_submit` (free-tier refusals are the
    product's `server_busy`);
  * a job is started on a hot node with a free slot by the execution module's claim
    (`generations.services.execution._claim`, as a worker would the moment a slot frees:
    highest priority first, then the longest waiting) and finished at start + service time by
    its finish (`_finish`) — called directly from the bench instead of through Celery and a
    backend, so waits, GPU runs and the uptime the fleet records are real rows. The Celery
    messages the services publish go to an in-memory broker nobody consumes (`memory://`).
Its GPU cost is the unit-cost report (`infra_costs.allocation.unit_cost_report`) over the day:
the uptime the fleet recorded × rates, warm time at the warm rate; it is checked against
Σ recorded intervals × rates (`infra_costs.fleet.selectors.fleet_cost`).

Static baseline, in the same run: the same arrivals served by priority then FIFO on as many
always-hot nodes as the pool's demo set-points say (`infra_costs.schedule.pool_sizes`; a small
event simulation here, with the product's rule for unmanaged pools: a free-tier job is refused
while 50 jobs wait). Its cost: planned node-hours × the hourly rate.

Printed per pool and in total: GPU cost of both and their ratio, node-hours, p50/p95 queue
wait per tier for both, jobs refused with server_busy, scaling decisions by action. Exit status
1 when a check fails (a job unfinished, the report ≠ Σ intervals × rates, ledger drift).

The database (default gpucredits_bench_fleet_day) is created when missing and migrated; each run
first deletes the previous run's nodes, uptime, GPU runs, decisions and jobs of the bench's
pools, and adds organizations of its own (plans `bench-fleet-<plan>`: the default plan's queue
tier with its daily and concurrency caps lifted — one organization stands for all of a tier's
customers).
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import itertools
import math
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_fleet_day"
DEFAULT_DAY = date(2026, 3, 2)  # a Monday: the a100 schedule's weekday peak
TICK = timedelta(seconds=30)
WARMUP = timedelta(hours=2)  # the initial fleet is leased this long before the day starts
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # rates and prices in force from here
GRANT = Decimal("1000000000000")
TOLERANCE = Decimal("0.000001")
# Plan (by slug) → its queue tier; the demo's tiers, lowest first.
TIERS = {"free": "low", "starter": "normal", "creator": "high", "studio": "highest"}
DEFAULT_MIX = "free=0.4,starter=0.3,creator=0.2,studio=0.1"
PROVIDER = {  # the simulated provider's defaults, spelled out
    "rent_delay_s": [1800, 3600],
    "resume_delay_s": [120, 300],
    "model_load_s": 60,
    "stop_delay_s": 30,
    "release_delay_s": 30,
}


# --- Demand (pure: no database) ---------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: datetime
    seq: int
    pool: str
    model: str
    plan: str
    service_s: float


def demo_set_points(pool_slug: str) -> list:
    """The demo catalog's set-points of the pool as unsaved rows (for `pool_sizes`)."""
    from generations.demo import POOLS
    from infra_costs.models import ScheduleSetPoint

    [spec] = [p for p in POOLS if p[0] == pool_slug]
    return [
        ScheduleSetPoint(pk=i, cron=cron, node_count=count, timezone=tz)
        for i, (cron, count, tz) in enumerate(spec[4], 1)
    ]


def static_sizes(pool_slug: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    from infra_costs.schedule import pool_sizes

    return pool_sizes(demo_set_points(pool_slug), start, end, "UTC")


def size_at(steps: list[tuple[datetime, int]], t: datetime) -> int:
    size = 0
    for at, n in steps:
        if at > t:
            break
        size = n
    return size


def _demo_level(hour: int) -> float:
    # generations.demo.seed_history: busier in the working day, quiet at night.
    return 0.9 if 9 <= hour < 18 else 0.42 if 7 <= hour < 23 else 0.15


def _busy_fraction(level: float, rank: int, steps: int = 200) -> float:
    """E[min(0.95, level × (0.6 + 0.8 U / max(1, 0.7 rank)))], U uniform: the demo history's
    busy share of its rank-th node."""
    k = max(1.0, rank * 0.7)
    total = 0.0
    for i in range(steps):
        u = (i + 0.5) / steps
        total += min(0.95, level * (0.6 + 0.8 * u / k))
    return total / steps


def pool_models(pool_slug: str) -> list[tuple[str, float, float, float]]:
    """(model slug, mean s, sigma, share) of the pool's demo models."""
    from generations.demo import MODELS

    return [(m[0], m[4], m[5], m[6]) for m in MODELS if m[2] == pool_slug]


def mean_service_s(pool_slug: str) -> float:
    models = pool_models(pool_slug)
    weight = sum(m[3] for m in models)
    return sum(m[3] * m[1] * math.exp(m[2] ** 2 / 2) for m in models) / weight


def hourly_arrivals(pool_slug: str, day_start: datetime, scale: float) -> list[float]:
    """Expected arrivals in each hour of the day: the demo's busy node-seconds / mean service."""
    steps = static_sizes(pool_slug, day_start, day_start + timedelta(days=1))
    mean = mean_service_s(pool_slug)
    rates = []
    for h in range(24):
        at = day_start + timedelta(hours=h)
        busy = sum(
            _busy_fraction(_demo_level(at.hour), r) for r in range(1, size_at(steps, at) + 1)
        )
        rates.append(scale * busy * 3600 / mean)
    return rates


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        plan, _, share = part.partition("=")
        plan = plan.strip()
        if plan not in TIERS:
            raise argparse.ArgumentTypeError(f"unknown plan {plan!r} (use {', '.join(TIERS)})")
        try:
            mix[plan] = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad share for {plan}: {share!r}") from None
        if mix[plan] < 0:
            raise argparse.ArgumentTypeError(f"negative share for {plan}")
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("the mix needs a positive share")
    return mix


def arrivals_for(
    *,
    pools: list[str],
    day_start: datetime,
    scale: float,
    seed: int,
    mix: dict[str, float],
    hours: int = 24,
) -> list[Arrival]:
    """The arrivals of the day's first `hours`, all pools, in time order (repeatable)."""
    out: list[Arrival] = []
    plans, plan_w = list(mix), list(mix.values())
    for pool in pools:
        rng = random.Random(f"fleet-day:{seed}:{pool}")
        models = pool_models(pool)
        weights = [m[3] for m in models]
        for h, rate in enumerate(hourly_arrivals(pool, day_start, scale)[:hours]):
            if rate <= 0:
                continue
            t = 0.0
            while True:
                t += rng.expovariate(rate / 3600)
                if t >= 3600:
                    break
                slug, mean, sigma, _ = rng.choices(models, weights)[0]
                out.append(
                    Arrival(
                        at=day_start + timedelta(hours=h, seconds=round(t, 3)),
                        seq=0,
                        pool=pool,
                        model=slug,
                        plan=rng.choices(plans, plan_w)[0],
                        service_s=round(max(1.0, rng.lognormvariate(0, sigma) * mean), 3),
                    )
                )
    out.sort(key=lambda a: (a.at, a.pool, a.model))
    return [Arrival(a.at, i, a.pool, a.model, a.plan, a.service_s) for i, a in enumerate(out, 1)]


# --- Static baseline (pure) -------------------------------------------------------------------


@dataclass
class PoolOutcome:
    """One pool's day under one policy."""

    cost_usd: Decimal = Decimal(0)
    node_hours: dict[str, Decimal] = field(default_factory=dict)  # rate kind → hours
    waits: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # plan → s
    submitted: int = 0
    finished: int = 0
    refused: Counter = field(default_factory=Counter)  # plan → server_busy refusals
    decisions: Counter = field(default_factory=Counter)  # action → count


def static_replay(
    arrivals: list[Arrival],
    *,
    pool: str,
    day_start: datetime,
    window_end: datetime,
    hourly_rate: Decimal,
    free_max_queued: int,
) -> PoolOutcome:
    """Priority then FIFO on the schedule's always-hot nodes. A node beyond the current size
    takes no new job (one it runs finishes). Cost: planned node-hours in [day_start,
    window_end) × the hourly rate."""
    from generations.services.submission import PRIORITY_BY_TIER

    horizon = day_start + timedelta(days=3)
    steps = static_sizes(pool, day_start, horizon)
    out = PoolOutcome()
    node_s = Decimal(0)
    for (t, n), (t_next, _) in itertools.pairwise([*steps, (horizon, 0)]):
        a, b = max(t, day_start), min(t_next, window_end)
        if b > a:
            node_s += n * Decimal(str((b - a).total_seconds()))
    hours = node_s / 3600
    out.node_hours = {"on_demand": hours}
    out.cost_usd = hours * hourly_rate

    mine = [a for a in arrivals if a.pool == pool]
    # Events: (time, order, payload). order: 0 finish, 1 size change, 2 arrival.
    events: list[tuple[datetime, int, int, object]] = []
    for t, n in steps:
        events.append((t, 1, 0, n))
    for a in mine:
        events.append((a.at, 2, a.seq, a))
    heapq.heapify(events)
    size = 0
    busy: set[int] = set()  # ranks running a job
    queue: list[tuple[int, datetime, int, Arrival]] = []
    while events:
        t, kind, key, payload = heapq.heappop(events)
        if kind == 0:
            busy.discard(key)
            out.finished += 1
        elif kind == 1:
            size = payload
        else:
            a = payload
            out.submitted += 1
            if TIERS[a.plan] == "low" and len(queue) >= free_max_queued:
                out.refused[a.plan] += 1
                continue
            heapq.heappush(queue, (PRIORITY_BY_TIER[TIERS[a.plan]], a.at, a.seq, a))
        while queue:
            free = next((r for r in range(1, size + 1) if r not in busy), None)
            if free is None:
                break
            _, _, _, a = heapq.heappop(queue)
            busy.add(free)
            out.waits[a.plan].append((t - a.at).total_seconds())
            heapq.heappush(events, (t + timedelta(seconds=a.service_s), 0, free, None))
        if not queue and not busy and all(k == 1 for _, k, _, _ in events):
            break
    return out


# --- The autoscaler run (database) ------------------------------------------------------------


@dataclass
class World:
    pools: dict[str, object]  # slug → NodePool
    orgs: dict[str, object]  # plan slug → Organization
    rates: dict[str, tuple[Decimal, Decimal]]  # slug → (hourly, warm)


def prepare(
    *,
    pool_slugs: list[str],
    run_id: str,
    warm_fraction: Decimal,
    floor: str,
    seed: int,
) -> World:
    """The demo catalog, the pools' previous rows gone, their rates (with the warm rate) and
    policies; the bench plans and this run's organizations, one per tier."""
    from django.db import transaction

    from accounts.models import Plan
    from accounts.services import organization_create
    from credits.services import organization_grant
    from generations.demo import POOLS, seed_catalog
    from generations.models import Job
    from infra_costs import services as infra_services
    from infra_costs.models import (
        AutoscalePolicy,
        GpuRun,
        Node,
        NodePool,
        PoolRate,
        ScalingDecision,
        UptimeInterval,
    )

    seed_catalog(start=EPOCH)
    pools = {p.slug: p for p in NodePool.objects.filter(slug__in=pool_slugs)}
    with transaction.atomic():
        # The other demo pools are not managed in this run.
        AutoscalePolicy.objects.exclude(pool__slug__in=pool_slugs).update(enabled=False)
        for pool in pools.values():
            Job.objects.filter(model__pool=pool).delete()
            GpuRun.objects.filter(pool=pool).delete()
            ScalingDecision.objects.filter(pool=pool).delete()
            UptimeInterval.objects.filter(pool=pool).delete()
            Node.objects.filter(pool=pool).delete()
            PoolRate.objects.filter(pool=pool).delete()
            pool.set_points.update(active=floor == "schedule")
    rates: dict[str, tuple[Decimal, Decimal]] = {}
    for slug, pool in pools.items():
        hourly = next(p[2] for p in POOLS if p[0] == slug)
        warm = (hourly * warm_fraction).quantize(Decimal("0.0001"))
        infra_services.pool_rate_add(
            pool=pool,
            hourly_rate_usd=hourly,
            warm_hourly_rate_usd=warm,
            effective_from=EPOCH,
            actor=None,
            reason="bench/fleet_day.py",
        )
        rates[slug] = (hourly, warm)
        AutoscalePolicy.objects.update_or_create(
            pool=pool,
            defaults={
                "enabled": True,
                "provider": "simulated",
                "provider_config": {**PROVIDER, "seed": seed},
                "calm_since": None,
            },
        )

    defaults = importlib.import_module("accounts.migrations.0002_default_plans").PLANS
    orgs = {}
    for plan_slug in TIERS:
        fields = dict(next(p for p in defaults if p["slug"] == plan_slug))
        fields.update(
            slug=f"bench-fleet-{plan_slug}",
            name=f"{fields['name']} (bench: caps lifted)",
            daily_generation_cap=None,
            max_concurrent_jobs=None,
            is_public=False,
            sort_order=900 + fields["sort_order"],
        )
        plan, _ = Plan.objects.update_or_create(slug=fields["slug"], defaults=fields)
        slug = f"bench-fleet-{run_id}-{plan_slug}"
        org = organization_create(name=f"Fleet day {run_id} {plan_slug}", slug=slug, plan=plan)
        organization_grant(
            organization=org,
            amount=GRANT,
            source="purchase",
            reason="bench/fleet_day.py",
            idempotency_key=slug,
        )
        orgs[plan_slug] = org
    return World(pools=pools, orgs=orgs, rates=rates)


def lease_initial_fleet(world: World, *, day_start: datetime, traveller) -> None:
    """Before the day: min_nodes primaries rented (hot at the start), one standby rented and
    stopped to warm — through the lifecycle services, so their uptime is recorded too."""
    from infra_costs import fleet

    t = day_start - WARMUP
    traveller.move_to(t)
    standbys = []
    for pool in world.pools.values():
        for _ in range(pool.min_nodes):
            fleet.node_rent(pool=pool, now=t, primary=True)
        standbys.append(fleet.node_rent(pool=pool, now=t))
    slowest = max(PROVIDER["rent_delay_s"]) + PROVIDER["model_load_s"]
    t += timedelta(seconds=slowest + 1)
    traveller.move_to(t)
    ids = [p.pk for p in world.pools.values()]
    fleet.fleet_advance(now=t, pool_ids=ids)
    for node in standbys:
        assert fleet.node_stop(node=node, now=t), f"standby {node.name} did not stop"
    t += timedelta(seconds=PROVIDER["stop_delay_s"] + 1)
    traveller.move_to(t)
    fleet.fleet_advance(now=t, pool_ids=ids)


class DayProgress:
    """A bar on stderr (a terminal only) over simulated time, after infra_costs.progress."""

    def __init__(self, label: str, *, enabled: bool = True) -> None:
        from infra_costs.progress import Progress

        class _Bar(Progress):
            def _draw(self, now: float) -> None:
                frac = min(1.0, self.fraction or 0.0)
                filled = int(frac * 30)
                self.stream.write(
                    f"\r{self.label}: [{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}%"
                    f"  {self.rows:>7,} jobs finished  {now - self.started:6.1f} s"
                )
                self.stream.flush()
                self._drawn = True

        self.bar = _Bar(label, enabled=enabled, interval=0.5)

    def update(self, jobs: int, fraction: float) -> None:
        self.bar.update(jobs, fraction)

    def close(self) -> None:
        self.bar.close()


@dataclass
class AutoscaledRun:
    outcomes: dict[str, PoolOutcome]
    report_cost: dict[str, Decimal]  # unit_cost_report per pool
    recorded_cost: dict[str, Decimal]  # Σ intervals × rates (fleet selectors)
    unexpected: Counter  # claim outcomes other than claimed / waiting
    unfinished: int
    window_end: datetime


def autoscaled_replay(
    arrivals: list[Arrival], world: World, *, day_start: datetime, end: datetime, progress: bool
) -> AutoscaledRun:
    """Ticks every 30 s from `day_start` until `end` is past, every accepted job finished and
    a tick fell on the hour. Costs are taken over [day_start, window_end): that hour, within
    the day (the day's end for a whole day)."""
    import time_machine
    from django.db import transaction

    from config.errors import ServerBusy
    from generations.backends import RunResult
    from generations.services import generation_submit
    from generations.services.execution import _claim, _finish
    from operations.fleet import fleet_tick

    pool_of_model = {m: p for p in world.pools for m, *_ in pool_models(p)}
    outcomes = {slug: PoolOutcome() for slug in world.pools}
    waiting: dict[str, list] = {slug: [] for slug in world.pools}  # (priority, at, seq, job id)
    blocked: dict[str, bool] = dict.fromkeys(world.pools, False)  # no slot since the last try
    running: list[tuple[datetime, int, str, object, int, str, datetime]] = []
    service: dict[int, float] = {}
    unexpected: Counter = Counter()
    finished = 0
    bar = DayProgress(f"fleet day {day_start:%Y-%m-%d}", enabled=progress)

    def start_waiting(pool: str, now: datetime) -> None:
        heap = waiting[pool]
        if blocked[pool]:
            return
        while heap:
            _, _, seq, job_id = heap[0]
            with transaction.atomic(durable=True):
                claimed, why = _claim(job_id, worker="bench-fleet-day", now=now)
            if claimed is None and why == "waiting for a node":
                blocked[pool] = True
                return
            heapq.heappop(heap)
            if claimed is None:
                unexpected[why] += 1
                continue
            job = claimed[0]
            finish = now + timedelta(seconds=service.pop(seq))
            heapq.heappush(running, (finish, seq, pool, job.pk, job.attempts, job.node, now))

    next_arrival = 0
    tick_at, last_tick = day_start, None
    with time_machine.travel(day_start - WARMUP, tick=False) as traveller:
        lease_initial_fleet(world, day_start=day_start, traveller=traveller)
        while True:
            t_arr = arrivals[next_arrival].at if next_arrival < len(arrivals) else None
            t_fin = running[0][0] if running else None
            idle = t_arr is None and t_fin is None and not any(waiting.values())
            on_the_hour = last_tick is not None and last_tick.minute == last_tick.second == 0
            if idle and on_the_hour and last_tick >= end:
                break
            candidates = [(tick_at, 1)]
            if t_fin is not None:
                candidates.append((t_fin, 0))
            if t_arr is not None:
                candidates.append((t_arr, 2))
            now, kind = min(candidates)
            traveller.move_to(now)
            if kind == 0:  # a job ends
                _, _, pool, job_id, attempt, node, started = heapq.heappop(running)
                result = RunResult(
                    output={"type": "bench", "service_time_s": (now - started).total_seconds()},
                    node=node,
                    started_at=started,
                    finished_at=now,
                )
                what = _finish(
                    job_id, attempt=attempt, outcome=result, error=None, worker="bench-fleet-day"
                )
                if what != "succeeded":
                    unexpected[f"finish {what}"] += 1
                finished += 1
                blocked[pool] = False
                start_waiting(pool, now)
            elif kind == 1:  # the fleet tick
                fleet_tick(now=now)
                for pool in world.pools:
                    blocked[pool] = False
                    start_waiting(pool, now)
                last_tick = now
                tick_at += TICK
                bar.update(finished, (now - day_start) / (end - day_start))
            else:  # an arrival
                a = arrivals[next_arrival]
                next_arrival += 1
                pool = pool_of_model[a.model]
                outcomes[pool].submitted += 1
                try:
                    job, _ = generation_submit(
                        organization=world.orgs[a.plan],
                        model_slug=a.model,
                        params={"prompt": f"fleet day job {a.seq}"},
                        now=now,
                    )
                except ServerBusy:
                    outcomes[pool].refused[a.plan] += 1
                    continue
                service[a.seq] = a.service_s
                heapq.heappush(waiting[pool], (job.priority, now, a.seq, job.pk))
                start_waiting(pool, now)
    bar.close()
    # The loop ends on a tick on the hour, which closed every node's open billing there: the
    # recorded uptime covers [day_start, window_end) exactly.
    window_end = min(last_tick, day_start + timedelta(days=1))
    return _collect(
        world, outcomes, day_start=day_start, window_end=window_end, unexpected=unexpected
    )


def _collect(
    world: World, outcomes, *, day_start: datetime, window_end: datetime, unexpected
) -> AutoscaledRun:
    from django.db.models import Count

    from generations.models import Job, JobStatus
    from infra_costs.allocation import unit_cost_report
    from infra_costs.fleet.selectors import fleet_cost
    from infra_costs.models import ScalingDecision, UptimeInterval

    day_end = window_end
    plan_of_org = {org.pk: plan for plan, org in world.orgs.items()}
    slug_of_pool = {p.pk: slug for slug, p in world.pools.items()}
    rows = Job.objects.filter(organization_id__in=plan_of_org).values_list(
        "organization_id", "model__pool_id", "status", "enqueued_at", "started_at"
    )
    unfinished = 0
    for org_id, pool_id, status, enqueued, started in rows:
        out = outcomes[slug_of_pool[pool_id]]
        if status != JobStatus.SUCCEEDED:
            unfinished += 1
            continue
        out.finished += 1
        out.waits[plan_of_org[org_id]].append((started - enqueued).total_seconds())
    decisions = (
        ScalingDecision.objects.filter(
            pool__in=world.pools.values(), at__gte=day_start, at__lt=day_end
        )
        .values_list("pool_id", "action")
        .annotate(n=Count("id"))
    )
    for pool_id, action, n in decisions:
        outcomes[slug_of_pool[pool_id]].decisions[action] = n
    for iv in UptimeInterval.objects.filter(
        pool__in=world.pools.values(), started_at__lt=day_end, ended_at__gt=day_start
    ):
        seconds = (min(iv.ended_at, day_end) - max(iv.started_at, day_start)).total_seconds()
        hours = outcomes[slug_of_pool[iv.pool_id]].node_hours
        hours[iv.rate_kind] = hours.get(iv.rate_kind, Decimal(0)) + Decimal(str(seconds)) / 3600

    # The report is by whole days; uptime is recorded only up to window_end (≤ the day's end).
    report = unit_cost_report(day_start.date(), day_start.date() + timedelta(days=1), window="day")
    report_cost = {
        row["pool"]: Decimal(row["cost_usd"])
        for row in report["pools"]
        if row["pool"] in world.pools
    }
    recorded = fleet_cost(start=day_start, end=day_end, now=day_end)
    recorded_cost = {slug: recorded.get(p.pk, Decimal(0)) for slug, p in world.pools.items()}
    for slug, out in outcomes.items():
        out.cost_usd = report_cost.get(slug, Decimal(0))
    return AutoscaledRun(
        outcomes=outcomes,
        report_cost=report_cost,
        recorded_cost=recorded_cost,
        unexpected=unexpected,
        unfinished=unfinished,
        window_end=window_end,
    )


# --- Output -----------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _s(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _merge(outcomes: list[PoolOutcome]) -> PoolOutcome:
    total = PoolOutcome()
    for o in outcomes:
        total.cost_usd += o.cost_usd
        for k, v in o.node_hours.items():
            total.node_hours[k] = total.node_hours.get(k, Decimal(0)) + v
        for plan, w in o.waits.items():
            total.waits[plan].extend(w)
        total.submitted += o.submitted
        total.finished += o.finished
        total.refused.update(o.refused)
        total.decisions.update(o.decisions)
    return total


def _hours(node_hours: dict[str, Decimal]) -> str:
    parts = [f"{k.replace('_', '-')} {v:.1f} h" for k, v in sorted(node_hours.items()) if v]
    return ", ".join(parts) or "0 h"


def print_block(name: str, auto: PoolOutcome, static: PoolOutcome, write) -> None:
    ratio = auto.cost_usd / static.cost_usd if static.cost_usd else None
    write(f"{name}")
    write(
        f"  GPU cost            autoscaler ${auto.cost_usd:,.2f}   static ${static.cost_usd:,.2f}"
        f"   autoscaler/static {f'{ratio:.3f}' if ratio is not None else '—'}"
    )
    write(f"  node-hours          autoscaler {_hours(auto.node_hours)}")
    write(f"                      static     {_hours(static.node_hours)}")
    write(
        f"  jobs                autoscaler {auto.finished:,} finished of {auto.submitted:,}"
        f" ({sum(auto.refused.values()):,} refused server_busy)   static {static.finished:,}"
        f" of {static.submitted:,} ({sum(static.refused.values()):,} refused: queue full)"
    )
    write("  queue wait          p50 / p95 autoscaler        p50 / p95 static")
    for plan, tier in TIERS.items():
        a, s = auto.waits.get(plan, []), static.waits.get(plan, [])
        if not a and not s and not auto.refused[plan]:
            continue
        refused = f"  ({auto.refused[plan]:,} refused)" if auto.refused[plan] else ""
        write(
            f"    {plan + '/' + tier:<17} {_s(percentile(a, 50)):>8} / {_s(percentile(a, 95)):<8}"
            f"       {_s(percentile(s, 50)):>8} / {_s(percentile(s, 95)):<8}{refused}".rstrip()
        )
    actions = ", ".join(f"{k} {v}" for k, v in sorted(auto.decisions.items())) or "none"
    write(f"  scaling decisions   {actions}")


# --- Main -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/fleet_day.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", default=None, help=f"default: {DEFAULT_URL}")
    p.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    p.add_argument(
        "--day",
        type=date.fromisoformat,
        default=DEFAULT_DAY,
        help=f"the UTC day replayed (default {DEFAULT_DAY}, a Monday)",
    )
    p.add_argument("--seed", type=int, default=0, help="RNG seed of demand and provider")
    p.add_argument(
        "--pools", default="a100,l4", help="demo pools to replay, comma-separated (a100,l4)"
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="volume: × the demo's demand (default 1: ≈ 4,900 jobs a day on a100 + l4, ~4 min; "
        "0.5 halves volume and runtime)",
    )
    p.add_argument(
        "--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX), help=f"tiers ({DEFAULT_MIX})"
    )
    p.add_argument(
        "--warm-fraction",
        type=Decimal,
        default=Decimal("0.05"),
        help="warm (stopped, leased) rate as a fraction of the hourly rate (0.05)",
    )
    p.add_argument(
        "--floor",
        choices=["min", "schedule"],
        default="min",
        help="the autoscaler's floor: the pool's min_nodes (default) or its demo schedule",
    )
    p.add_argument(
        "--hours",
        type=int,
        default=24,
        help="replay only the day's first N hours (a quick run; default 24)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    args.pools = [s.strip() for s in args.pools.split(",") if s.strip()]
    if not args.pools:
        p.error("--pools: name at least one pool")
    if args.scale <= 0:
        p.error("--scale must be positive")
    if not 1 <= args.hours <= 24:
        p.error("--hours must be 1 to 24")
    return args


def main(argv=None, *, setup_database: bool = True, write=print) -> int:
    """Run the bench. `setup_database=False`: Django is already set up on a database (tests)."""
    args = parse_args(argv)
    if setup_database:
        url = args.database_url or (
            DEFAULT_URL if "DATABASE_URL" not in os.environ else _django.database_url()
        )
        # The services publish Celery messages; no worker consumes them here.
        os.environ.setdefault("CELERY_BROKER_URL", "memory://localhost/")
        if _django.ensure_database(url, fresh=args.fresh):
            print(f"created database {_django.database_name(url)}", flush=True)
        _django.setup(url)
        from django.db import connection

        # Simulated time, not throughput, is measured: commits need not wait for the disk
        # (thousands of small transactions; this session only).
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
    from generations.demo import POOLS

    known = [s[0] for s in POOLS]
    if any(s not in known for s in args.pools):
        write(f"--pools: choose among {', '.join(known)}")
        return 2

    from django.conf import settings

    from credits.selectors import ledger_drift

    t0 = time.monotonic()
    day_start = datetime(args.day.year, args.day.month, args.day.day, tzinfo=UTC)
    arrivals = arrivals_for(
        pools=args.pools,
        day_start=day_start,
        scale=args.scale,
        seed=args.seed,
        mix=args.mix,
        hours=args.hours,
    )
    run_id = uuid.uuid4().hex[:8]
    world = prepare(
        pool_slugs=args.pools,
        run_id=run_id,
        warm_fraction=args.warm_fraction,
        floor=args.floor,
        seed=args.seed,
    )
    per_pool = Counter(a.pool for a in arrivals)
    write(
        f"Fleet day {args.day} ({args.day:%a}), seed {args.seed}, scale {args.scale:g}: "
        f"{len(arrivals):,} arrivals ("
        + ", ".join(f"{p} {per_pool[p]:,}" for p in args.pools)
        + f"); mix {', '.join(f'{k} {v:g}' for k, v in args.mix.items())}; "
        f"tick {TICK.total_seconds():.0f} s; floor {args.floor}; warm rate "
        + ", ".join(f"{p} ${w}/h (hourly ${h})" for p, (h, w) in world.rates.items())
    )
    progress = not args.no_progress
    run = autoscaled_replay(
        arrivals,
        world,
        day_start=day_start,
        end=day_start + timedelta(hours=args.hours),
        progress=progress,
    )
    static = {
        slug: static_replay(
            arrivals,
            pool=slug,
            day_start=day_start,
            window_end=run.window_end,
            hourly_rate=world.rates[slug][0],
            free_max_queued=settings.GENERATIONS_FREE_TIER_MAX_QUEUED,
        )
        for slug in args.pools
    }
    elapsed = time.monotonic() - t0
    write("")
    for slug in args.pools:
        print_block(f"pool {slug}", run.outcomes[slug], static[slug], write)
        write("")
    auto_total = _merge(list(run.outcomes.values()))
    static_total = _merge(list(static.values()))
    if len(args.pools) > 1:
        print_block("total", auto_total, static_total, write)
        write("")

    problems = []
    if run.unfinished or auto_total.finished != auto_total.submitted - sum(
        auto_total.refused.values()
    ):
        problems.append(f"{run.unfinished} accepted jobs did not succeed")
    if run.unexpected:
        problems.append(f"unexpected claim/finish outcomes: {dict(run.unexpected)}")
    for slug in args.pools:
        diff = abs(run.report_cost.get(slug, Decimal(0)) - run.recorded_cost[slug])
        if diff > TOLERANCE:
            problems.append(
                f"{slug}: unit_costs ${run.report_cost.get(slug, 0)} ≠ Σ recorded uptime × rates"
                f" ${run.recorded_cost[slug]:.6f}"
            )
    drift = ledger_drift()
    if drift:
        problems.append(f"ledger drift: {drift[:3]}")
    ratio = auto_total.cost_usd / static_total.cost_usd if static_total.cost_usd else Decimal(0)
    refused = sum(auto_total.refused.values())
    write(
        f"totals: arrivals {len(arrivals)} accepted {auto_total.submitted - refused}"
        f" finished {auto_total.finished} refused {refused}"
        f" autoscaler_usd {auto_total.cost_usd:.6f} static_usd {static_total.cost_usd:.6f}"
        f" ratio {ratio:.4f}"
    )
    write(
        "checks: "
        + (
            "; ".join(problems)
            if problems
            else "every accepted job finished; unit_costs = "
            "Σ recorded uptime × rates; no ledger drift"
        )
        + f" — {elapsed:.0f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
