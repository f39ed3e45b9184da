"""The demo world `seed_demo` builds on top of the demo accounts: GPU pools with versioned rates
and schedules, AI models with prices, and `--days` of uptime and job history whose idle share is
realistic (~50%), so the unit-cost report shows the idle problem.

Everything is idempotent: pools, rates, set-points and models are matched by their natural
keys, and the history is generated once per (days, seed) — its rows carry a `demo-<seed>-`
prefix — and kept on re-runs.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from generations.models import AIModel, Backend, CreditRate
from infra_costs.models import (
    GpuRun,
    Node,
    NodePool,
    PoolRate,
    RunSource,
    RunStatus,
    ScheduleSetPoint,
    UptimeInterval,
    UptimeSource,
)
from infra_costs.schedule import pool_sizes

POOLS = [
    # slug, gpu, hourly rate, SLA seconds, set-points (cron, nodes, tz)
    (
        "a100",
        "A100 80GB",
        Decimal("3.60"),
        120,
        [("0 8 * * 1-5", 4, "UTC"), ("0 20 * * 1-5", 2, "UTC"), ("0 0 * * 6,0", 2, "UTC")],
    ),
    ("l4", "L4 24GB", Decimal("0.80"), 60, [("0 7 * * *", 3, "UTC"), ("0 23 * * *", 1, "UTC")]),
]

# slug, name, pool, credits, mean seconds, sigma, share of its pool's work, external USD, kind
MODELS = [
    ("flux-dev", "FLUX.1 [dev]", "a100", "8", 25.0, 0.3, 0.55, "0", "image"),
    ("wan-video", "Wan 2.1 video (5 s)", "a100", "60", 180.0, 0.25, 0.45, "0", "video"),
    ("sdxl", "Stable Diffusion XL", "l4", "3", 20.0, 0.3, 0.4, "0", "image"),
    ("musicgen", "MusicGen (30 s)", "l4", "6", 45.0, 0.2, 0.35, "0", "audio"),
    ("flux-pro-licensed", "FLUX.1 [pro] (licensed)", "l4", "12", 25.0, 0.2, 0.25, "0.012", "image"),
]


@dataclass
class DemoWorld:
    pools: list[NodePool]
    models: list[AIModel]
    uptime_intervals: int
    runs: int
    history_created: bool


def _day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def seed_catalog(*, start: datetime) -> tuple[list[NodePool], list[AIModel]]:
    pools = []
    for slug, gpu, rate, sla, set_points in POOLS:
        pool, _ = NodePool.objects.get_or_create(
            slug=slug, defaults={"gpu_type": gpu, "sla_queue_wait_s": sla}
        )
        PoolRate.objects.get_or_create(
            pool=pool,
            effective_from=start,
            defaults={"hourly_rate_usd": rate, "reason": "demo list price"},
        )
        for cron, count, tz in set_points:
            ScheduleSetPoint.objects.get_or_create(
                pool=pool, cron=cron, timezone=tz, defaults={"node_count": count}
            )
        pools.append(pool)
    by_slug = {p.slug: p for p in pools}
    models = []
    for slug, name, pool, credits, mean, sigma, _share, external, kind in MODELS:
        model, _ = AIModel.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "pool": by_slug[pool],
                "backend": Backend.SIMULATED,
                "backend_config": {
                    "mean_s": mean,
                    "sigma": sigma,
                    "cold_start_s": 2.0,
                    "failure_rate": 0.02,
                    "output_type": kind,
                },
                "external_cost_usd": Decimal(external),
                "description": f"Demo {kind} model on the {pool} pool.",
            },
        )
        if not model.rates.exists():
            CreditRate.objects.create(
                model=model,
                credits=Decimal(credits),
                effective_from=start,
                reason="demo launch price",
            )
        models.append(model)
    return pools, models


def _uptime_per_rank(pool: NodePool, start: datetime, end: datetime) -> dict[int, list]:
    """The schedule as planned node intervals: rank r is up while the pool's size ≥ r."""
    steps = pool_sizes(list(pool.set_points.filter(active=True)), start, end, pool.timezone)
    steps = [*steps, (end, 0)]
    ranks: dict[int, list[tuple[datetime, datetime]]] = {}
    for (t, size), (t_next, _) in itertools.pairwise(steps):
        for rank in range(1, size + 1):
            spans = ranks.setdefault(rank, [])
            if spans and spans[-1][1] == t:
                spans[-1] = (spans[-1][0], t_next)
            else:
                spans.append((t, t_next))
    return ranks


def seed_history(*, days: int, seed: int, end: datetime) -> tuple[int, int, bool]:
    """Uptime (as if ingested from the provider) and GPU runs for `days` before `end`."""
    prefix = f"demo-{seed}-"
    if GpuRun.objects.filter(external_id__startswith=prefix).exists():
        return 0, 0, False
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    uptime_rows: list[UptimeInterval] = []
    run_rows: list[tuple] = []
    now = timezone.now()
    n = 0
    for pool in NodePool.objects.filter(slug__in=[p[0] for p in POOLS]):
        models = [m for m in MODELS if m[2] == pool.slug]
        weights = [m[6] for m in models]
        for rank, spans in _uptime_per_rank(pool, start, end).items():
            node, _ = Node.objects.get_or_create(
                name=f"{pool.slug}-node-{rank}", defaults={"pool": pool}
            )
            for up_from, up_to in spans:
                uptime_rows.append(
                    UptimeInterval(
                        node=node,
                        pool=pool,
                        started_at=up_from,
                        ended_at=up_to,
                        source=UptimeSource.IMPORTED,
                    )
                )
                t = up_from
                while t < up_to:
                    hour = t.hour
                    # Busier in the working day; nights and the extra day nodes sit idle.
                    demand = 0.9 if 9 <= hour < 18 else 0.42 if 7 <= hour < 23 else 0.15
                    demand *= 0.6 + 0.8 * rng.random() / max(1, rank * 0.7)
                    model = rng.choices(models, weights)[0]
                    mean, sigma = model[4], model[5]
                    service = max(1.0, rng.lognormvariate(0, sigma) * mean)
                    gap = service * (1 - min(demand, 0.95)) / max(min(demand, 0.95), 0.02)
                    t += timedelta(seconds=rng.expovariate(1 / gap))
                    finish = t + timedelta(seconds=service)
                    if finish > up_to:
                        break
                    n += 1
                    status = RunStatus.FAILED if rng.random() < 0.03 else RunStatus.SUCCEEDED
                    run_rows.append(
                        (
                            f"{prefix}{n}",
                            model[0],
                            pool.pk,
                            node.pk,
                            t,
                            finish,
                            status,
                            RunSource.IMPORTED,
                            now,
                        )
                    )
                    t = finish
    table = GpuRun._meta.db_table
    columns = (
        "external_id, model_slug, pool_id, node_id, started_at, finished_at, status, "
        "source, created_at"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        UptimeInterval.objects.bulk_create(uptime_rows, batch_size=2000, ignore_conflicts=True)
        with connection.cursor() as cursor:  # plain tuples: ORM objects would be 10x slower
            for i in range(0, len(run_rows), 5000):
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 9)})",
                    [
                        (*r[:4], adapt(r[4]), adapt(r[5]), *r[6:8], adapt(r[8]))
                        for r in run_rows[i : i + 5000]
                    ],
                )
    return len(uptime_rows), len(run_rows), True


def seed_world(*, days: int, seed: int, now: datetime | None = None) -> DemoWorld:
    now = now or timezone.now()
    end = _day_start(now)
    start = end - timedelta(days=days)
    pools, models = seed_catalog(start=min(start, end - timedelta(days=1)))
    uptime, runs, created = seed_history(days=days, seed=seed, end=end)
    return DemoWorld(
        pools=pools, models=models, uptime_intervals=uptime, runs=runs, history_created=created
    )
