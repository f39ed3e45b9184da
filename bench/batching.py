#!/usr/bin/env python3
"""Throughput of batching on the simulated backend (issue 11): the same queue of jobs drained
by one fleet-managed node (one slot) with `batch_size` 1 (the baseline) and larger batches, in
one run. Each job goes through the real path — submission with its hold, the claim onto the
node, the backend call (a real `time.sleep` of the simulated service time × `--speedup`), the
finish with its capture — only the Celery hop is left out (the drain loop calls the task's
body). Prints jobs/s, GPU seconds per job and the gain over batch size 1, and checks that every
batch's GPU runs tile its wall time (allocation stays exact) and that each job was charged once.

    .venv/bin/python bench/batching.py                 # ~30 s: 48 jobs × batch sizes 1, 2, 4, 8
    .venv/bin/python bench/batching.py --jobs 96 --sizes 1,4 --speedup 0.05
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--jobs", type=int, default=48, help="jobs in the queue (default 48)")
    p.add_argument("--sizes", default="1,2,4,8", help="batch sizes to compare (default 1,2,4,8)")
    p.add_argument("--mean-s", type=float, default=2.0, help="mean service time of one job, s")
    p.add_argument(
        "--marginal",
        type=float,
        default=0.3,
        help="a batch takes its longest job plus this share of each other job (default 0.3)",
    )
    p.add_argument(
        "--speedup", type=float, default=0.05, help="real seconds per simulated second (0.05)"
    )
    return p.parse_args(argv)


def setup_world(batch_size: int, args) -> tuple:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from accounts.models import Plan
    from credits.models import CreditAccount
    from generations.models import AIModel, CreditRate
    from infra_costs import fleet
    from infra_costs.models import AutoscalePolicy, NodePool, PoolRate
    from tests.factories import make_account

    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE generations_job, generations_jobevent, infra_costs_gpurun, "
            "infra_costs_uptimeinterval, infra_costs_nodeevent, infra_costs_scalingdecision, "
            "infra_costs_node, infra_costs_autoscalepolicy CASCADE"
        )
    pool, _ = NodePool.objects.get_or_create(slug="bench-batch", defaults={"gpu_type": "A100"})
    PoolRate.objects.get_or_create(
        pool=pool,
        effective_from=timezone.now() - timedelta(days=1),
        defaults={"hourly_rate_usd": Decimal("2.00")},
    )
    AutoscalePolicy.objects.create(
        pool=pool, enabled=True, provider_config={"rent_delay_s": [0, 0], "model_load_s": 0}
    )
    config = {"mean_s": args.mean_s, "sigma": 0.2, "batch_size": batch_size}
    config["batch_marginal"] = args.marginal
    model, _ = AIModel.objects.update_or_create(
        slug="bench-batch-model",
        defaults={"name": "Bench batch model", "pool": pool, "backend_config": config},
    )
    if not model.rates.exists():
        CreditRate.objects.create(
            model=model, credits=1, effective_from=timezone.now() - timedelta(days=1), reason="b"
        )
    node = fleet.node_rent(pool=pool, now=timezone.now(), primary=True)
    fleet.fleet_advance(now=timezone.now())
    node.refresh_from_db()
    assert node.takes_work, node.state
    Plan.objects.filter(slug="enterprise").update(max_concurrent_jobs=None)
    account = CreditAccount.objects.filter(organization__slug="bench-batch").first()
    org = (
        account.organization
        if account
        else make_account(plan="enterprise", credits=10**9, slug="bench-batch").organization
    )
    return org, model, node


def drain(batch_size: int, args) -> dict:
    from django.conf import settings
    from django.db.models import F, Sum

    from credits.models import EntryKind, LedgerEntry
    from generations import services
    from generations.models import Job, JobStatus
    from infra_costs.models import GpuRun

    settings.GENERATIONS_SIMULATED_SPEEDUP = args.speedup
    org, model, _node = setup_world(batch_size, args)
    for i in range(args.jobs):
        services.generation_submit(
            organization=org, model_slug=model.slug, params={"prompt": f"job {i}", "seed": i}
        )
    t0 = time.perf_counter()
    calls = 0
    while True:
        nxt = (
            Job.objects.filter(status=JobStatus.QUEUED)
            .order_by("enqueued_at", "pk")
            .values_list("pk", flat=True)
            .first()
        )
        if nxt is None:
            break
        services.generation_run(job_id=nxt)
        calls += 1
        if sys.stderr.isatty():
            finished = Job.objects.filter(status__in=["succeeded", "failed"]).count()
            sys.stderr.write(f"\r  batch {batch_size}: {finished}/{args.jobs} jobs")
    wall = time.perf_counter() - t0
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 40 + "\r")
    done = Job.objects.filter(status=JobStatus.SUCCEEDED).count()
    gpu = GpuRun.objects.aggregate(s=Sum(F("finished_at") - F("started_at")))["s"]
    holds = Job.objects.exclude(hold=None).values_list("hold_id", flat=True)
    captures = LedgerEntry.objects.filter(kind=EntryKind.CAPTURE, hold_id__in=holds)
    once = captures.values("hold").distinct().count() == captures.count() == done
    # Runs of one batch tile its wall time: no two runs of the node overlap.
    runs = list(GpuRun.objects.order_by("started_at").values_list("started_at", "finished_at"))
    overlap = any(b[0] < a[1] - _micro() for a, b in itertools.pairwise(runs))
    return {
        "size": batch_size,
        "calls": calls,
        "jobs": done,
        "wall": wall,
        "rate": done / wall if wall else 0.0,
        "gpu_per_job": gpu.total_seconds() / args.speedup / max(done, 1),
        "charged_once": once,
        "tiles": not overlap,
    }


def _micro():
    from datetime import timedelta

    return timedelta(microseconds=2)


def main(argv=None) -> int:
    args = parse_args(argv)
    url = _django.database_url()
    _django.ensure_database(url)
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    _django.setup(url)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(
        f"batching: {args.jobs} jobs of mean {args.mean_s:g} s on one node (one slot), "
        f"marginal {args.marginal:g}, 1 simulated s = {args.speedup:g} real s"
    )
    rows = [drain(size, args) for size in sizes]
    base = rows[0]["rate"] or 1e-9
    print(
        f"{'batch':>5} {'calls':>6} {'jobs':>5} {'wall s':>7} {'jobs/s':>7} "
        f"{'GPU s/job':>9} {'gain':>6}  checks"
    )
    ok = True
    for r in rows:
        checks = "ok" if r["charged_once"] and r["tiles"] and r["jobs"] == args.jobs else "FAIL"
        ok = ok and checks == "ok"
        print(
            f"{r['size']:>5} {r['calls']:>6} {r['jobs']:>5} {r['wall']:>7.2f} {r['rate']:>7.1f} "
            f"{r['gpu_per_job']:>9.2f} {r['rate'] / base:>5.2f}x  {checks}"
        )
    print("gain = jobs/s against batch size", sizes[0], "on the same machine, same run")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
