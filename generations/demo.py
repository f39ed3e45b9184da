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
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organization, User
from credits.services import hold_capture, hold_release, spend_authorize
from generations.backends.simulated import output_url
from generations.models import AIModel, Backend, CreditRate, Job, JobStatus
from generations.selectors import rate_current
from generations.services.events import job_event_add
from generations.services.submission import params_hash
from infra_costs.models import (
    AutoscalePolicy,
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
from infra_costs.schedule import active_set_points, pool_sizes

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
# The price of a stopped but leased node (the fleet's warm standbys), per pool.
WARM_RATES = {"a100": Decimal("0.40"), "l4": Decimal("0.10")}
# `make run`'s fleet: the simulated provider with its delays compressed (a rent takes 20–40 s
# instead of 30–60 min) so the demo shows nodes coming up; thresholds are the defaults.
DEMO_PROVIDER_CONFIG = {
    "rent_delay_s": [20, 40],
    "resume_delay_s": [5, 10],
    "model_load_s": 3,
    "stop_delay_s": 2,
    "release_delay_s": 2,
}
DEMO_MAX_NODES = 6

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
            defaults={
                "hourly_rate_usd": rate,
                "warm_hourly_rate_usd": WARM_RATES.get(slug),
                "reason": DEMO_RATE_REASON,
            },
        )
        # The pool is fleet-managed: the autoscaler (the fleet tick) rents its nodes up to the
        # schedule's set-point on the first ticks, then follows the queue.
        AutoscalePolicy.objects.get_or_create(
            pool=pool,
            defaults={"provider_config": DEMO_PROVIDER_CONFIG, "max_nodes": DEMO_MAX_NODES},
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
    steps = pool_sizes(list(active_set_points(pool)), start, end, pool.timezone)
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


HISTORY_PREFIX = "demo-"  # every generated GpuRun's external_id starts with it (then "<seed>-")
DEMO_RATE_REASON = "demo list price"  # the pools' first PoolRate: the catalog was seeded


def history_pending() -> bool:
    """The demo catalog exists but its history does not yet: `make run` serves while it is being
    generated in the background (`seed_demo --history-only`), and the staff pages say so. The
    history is written in one transaction, so its rows exist only once it is complete."""
    return (
        PoolRate.objects.filter(reason=DEMO_RATE_REASON).exists()
        and not GpuRun.objects.filter(external_id__startswith=HISTORY_PREFIX).exists()
    )


def seed_history(*, days: int, seed: int, end: datetime, progress=None) -> tuple[int, int, bool]:
    """Uptime (as if ingested from the provider) and GPU runs for `days` before `end`, in one
    transaction; the runs go in with COPY. `progress(line)`, if given, hears each step."""
    prefix = f"{HISTORY_PREFIX}{seed}-"
    if GpuRun.objects.filter(external_id__startswith=prefix).exists():
        return 0, 0, False
    say = progress or (lambda line: None)
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
        say(f"pool {pool.slug}: {len(run_rows):,} GPU runs generated so far")
    table = GpuRun._meta.db_table
    columns = (
        "external_id, model_slug, pool_id, node_id, started_at, finished_at, status, "
        "source, created_at"
    )
    with transaction.atomic():
        UptimeInterval.objects.bulk_create(uptime_rows, batch_size=2000, ignore_conflicts=True)
        say(f"{len(uptime_rows):,} uptime intervals written; copying {len(run_rows):,} GPU runs")
        step = 100_000
        with (
            connection.cursor() as cursor,
            cursor.copy(  # plain tuples via COPY: no ORM objects
                f"COPY {table} ({columns}) FROM STDIN"
            ) as copy,
        ):
            for i, row in enumerate(run_rows, 1):
                copy.write_row(row)
                if i % step == 0:
                    say(f"{i:,} / {len(run_rows):,} GPU runs copied")
    return len(uptime_rows), len(run_rows), True


def seed_world(
    *, days: int, seed: int, now: datetime | None = None, history: bool = True, progress=None
) -> DemoWorld:
    """The catalog (pools, rates, schedules, models), then — unless `history` is False — the
    history (`seed_history`)."""
    now = now or timezone.now()
    end = _day_start(now)
    start = end - timedelta(days=days)
    pools, models = seed_catalog(start=min(start, end - timedelta(days=1)))
    uptime, runs, created = (
        seed_history(days=days, seed=seed, end=end, progress=progress) if history else (0, 0, False)
    )
    return DemoWorld(
        pools=pools, models=models, uptime_intervals=uptime, runs=runs, history_created=created
    )


# --- The demo organization's own jobs ---------------------------------------------------------

DEMO_JOB_DAYS = 14  # the demo organization's job history: these last days…
DEMO_JOBS_PER_DAY = (1, 5)  # …with this many jobs a day (random, inclusive)
DEMO_JOB_MODELS = [("flux-dev", 5), ("sdxl", 6), ("musicgen", 2), ("wan-video", 1)]  # weights
DEMO_PROMPTS = [
    "a lighthouse at dawn, watercolor",
    "a red fox in fresh snow",
    "isometric city block at night",
    "lofi beat with rain",
    "a paper boat on a river",
    "portrait of a robot gardener",
]
DEMO_JOB_NAMESPACE = uuid.UUID("6f1c1f0e-5b1d-4a55-9a53-2a4c3d1e0b7a")


def seed_demo_jobs(
    *,
    organization: Organization,
    user: User,
    seed: int,
    days: int = DEMO_JOB_DAYS,
    now: datetime | None = None,
) -> int:
    """A few jobs a day over the last DEMO_JOB_DAYS days for the demo organization, so its
    dashboard, usage chart, jobs and ledger are not empty. Money moves only through
    `credits.services`: each job's hold is placed (`spend_authorize`, at the job's time) and
    captured when it succeeded, released when it failed — so the ledger invariants hold. Job ids
    derive from (seed, n): a re-run creates only the missing ones. Returns how many it created.
    """
    now = now or timezone.now()
    rng = random.Random(f"demo-jobs-{seed}")
    models = {m.slug: m for m in AIModel.objects.filter(slug__in=[m for m, _ in DEMO_JOB_MODELS])}
    choices = [(slug, w) for slug, w in DEMO_JOB_MODELS if slug in models]
    if not choices:
        return 0
    today = _day_start(now)
    created = 0
    n = 0
    for days_ago in range(min(days, DEMO_JOB_DAYS) - 1, -1, -1):
        day = today - timedelta(days=days_ago)
        for _ in range(rng.randint(*DEMO_JOBS_PER_DAY)):
            n += 1
            at = day + timedelta(seconds=rng.randint(8 * 3600, 20 * 3600))
            slug = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
            failed = rng.random() < 0.06
            prompt = rng.choice(DEMO_PROMPTS)
            seed_value = rng.randint(0, 2**31 - 1)
            run_s = max(2.0, rng.lognormvariate(0, 0.3) * 20)  # every draw before any skip
            if at >= now - timedelta(minutes=5):
                continue  # only finished history
            job_id = uuid.uuid5(DEMO_JOB_NAMESPACE, f"{seed}-{n}")
            if (
                Job.objects.filter(pk=job_id).exists()
                or rate_current(model=models[slug], now=at) is None
            ):
                continue
            _demo_job(
                job_id=job_id,
                organization=organization,
                user=user,
                model=models[slug],
                params={"prompt": prompt, "seed": seed_value},
                at=at,
                run_s=run_s,
                failed=failed,
            )
            created += 1
    return created


def _demo_job(*, job_id, organization, user, model: AIModel, params, at, run_s, failed) -> Job:
    with transaction.atomic():
        rate = rate_current(model=model, now=at)
        hold = spend_authorize(
            organization=organization,
            amount=rate.credits,
            key=f"job:{job_id}",
            metadata={
                "model": model.slug,
                "job": str(job_id),
                "description": f"{model.name} generation",
            },
            now=at,
        )
        started = at + timedelta(seconds=2)
        finished = started + timedelta(seconds=run_s)
        job = Job.objects.create(
            id=job_id,
            organization=organization,
            model=model,
            rate=rate,
            params=params,
            params_hash=params_hash(params),
            created_by=user,
            created_at=at,
            enqueued_at=at,
            hold=hold,
            credits_held=hold.amount,
            status=JobStatus.FAILED if failed else JobStatus.SUCCEEDED,
            node=f"{model.pool.slug}-node-1",
            attempts=1,
            started_at=started,
            finished_at=finished,
        )
        job_event_add(job, JobStatus.QUEUED, at=at, message="demo history")
        job_event_add(job, JobStatus.RUNNING, at=started)
        if failed:
            hold_release(hold=hold, reason="demo: the node failed", now=finished)
            job.credits_charged = Decimal(0)
            job.error = "The GPU node failed while running the job (demo history)."
            job.error_code = "node_error"
        else:
            hold_capture(hold=hold, now=finished)
            job.credits_charged = job.credits_held
            kind = str(model.backend_config.get("output_type", "image"))
            job.result = {
                "type": kind,
                "url": output_url(str(job_id), kind),
                "seed": params["seed"],
                "service_time_s": round(run_s, 3),
                "cold_start_s": 0.0,
            }
        job.save(update_fields=["credits_charged", "error", "error_code", "result"])
        job_event_add(job, job.status, at=finished)
    return job
