#!/usr/bin/env python
"""Worker-path bench (issue 16): jobs submitted, then each run in-process by `generation_run`
(no Celery) with the instant simulated backend; statements, wall and CPU per job.

Fixtures: a fresh organization on Studio and a one-node model (1 credit). Jobs are submitted
8 at a time (Studio's concurrent-jobs cap) and run at once; one warm job first records the
node. Database: gpucredits_bench_worker (created and migrated when missing; DATABASE_URL
overrides). Usage: `.venv/bin/python bench/worker_path.py [--jobs 200]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_worker"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    _django.ensure_database(url)
    _django.setup(url)

    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from generations import services
    from generations.services import spool
    from tests.factories import UserFactory, make_ai_model, make_org

    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    tag = uuid.uuid4().hex[:8]
    owner = UserFactory(email=f"{tag}@bench.test")
    org = make_org(plan="studio", slug=f"wb-{tag}", owner=owner)
    slug = f"wb-{tag}"
    make_ai_model(slug, credits="1", backend_config={"mean_s": 0.01, "nodes": 1})

    def submit(batch: int) -> list:
        return [
            services.generation_submit(
                organization=org, model_slug=slug, params={"prompt": f"c {batch} {i}"}
            )[0].pk
            for i in range(8)
        ]

    warm = submit(-1)
    services.generation_run(job_id=warm[0])  # the node's first run records the node
    with CaptureQueriesContext(connection) as ctx:
        services.generation_run(job_id=warm[1])
    for job_id in warm[2:]:
        services.generation_run(job_id=job_id)
    walls, cpus = [], []
    for batch in range(args.jobs // 8):
        for job_id in submit(batch):
            wall, cpu = time.perf_counter(), time.process_time()
            outcome = services.generation_run(job_id=job_id)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert outcome == "succeeded", outcome
    started = time.perf_counter()
    for _ in range(1000):
        spool.results_drain_safe()
    spool_us = (time.perf_counter() - started) * 1000
    walls.sort()
    print(
        f"jobs {len(walls)}: {len(ctx.captured_queries)} Django statements per job; "
        f"wall p50 {statistics.median(walls) * 1000:.2f} ms, "
        f"p99 {walls[int(len(walls) * 0.99) - 1] * 1000:.2f} ms; "
        f"CPU mean {statistics.mean(cpus) * 1000:.2f} ms; "
        f"empty-spool check {spool_us:.1f} us"
    )


if __name__ == "__main__":
    main()
