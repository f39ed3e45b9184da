#!/usr/bin/env python
"""Fault-simulation soak: many more seeds of tests/simulation than `make test` runs.

Each seed is a tiny world (2–6 jobs of 1–2 organizations) driven through the real generation
services under a seeded fault schedule (broker down, connection loss inside transactions,
worker death at step boundaries, stalls and lapsed leases, duplicate and out-of-order
deliveries, concurrent cancels, price changes, node failures and timeouts), settled, and checked
against the invariants (tests/simulation/invariants.py). Every seed runs in a savepoint rolled
back at its end, inside one transaction rolled back when the soak stops: the database is left
as it was.

    .venv/bin/python bench/soak.py                      # 50,000 seeds from 0
    .venv/bin/python bench/soak.py --seeds 5000 --first 100000
    .venv/bin/python bench/soak.py --mutant capture_twice_on_redelivery --seeds 200
    .venv/bin/python bench/soak.py --workers 1          # all in this process

With more than one worker (the default: one per core, at most 2), the seeds are spread over
spawned processes as `make test` does (tests/simulation/parallel.py): each works on a copy of
the database (`<name>_sim<N>`, dropped at the end) and runs chunks of seeds in a transaction of
its own, rolled back. The copies need the database to have no other session; if it has one,
the soak runs in this process.

A failing seed prints its invariants, its trace and the command that replays it. Exit status 1
when any seed failed. DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/gpucredits_bench.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django


def progress(done: int, total: int, failed: int, started: float) -> None:
    width = 40
    filled = width * done // max(total, 1)
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else 0
    eta = (total - done) / rate if rate > 0 else 0
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} seeds "
        f"{rate:,.1f}/s  failed {failed}  eta {eta:,.0f} s "
    )
    sys.stderr.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50_000, help="how many seeds (50,000)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (0)")
    parser.add_argument("--mutant", default=None, help="a tests/simulation/mutants.py variant")
    parser.add_argument("--stop-after", type=int, default=20, help="stop after N failures")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (one per core, at most 2)",
    )
    args = parser.parse_args()

    url = _django.database_url()
    _django.ensure_database(url)
    _django.setup(url)

    from django.db import transaction
    from django.test.utils import setup_test_environment

    from tests.simulation import mutants
    from tests.simulation.harness import World, run_seed

    extra = getattr(mutants, args.mutant) if args.mutant else None
    setup_test_environment()  # the seeds that go through the API use Django's test client
    logging.disable(logging.CRITICAL)
    failures = []
    started = time.perf_counter()
    if args.workers > 1:
        from tests.simulation.parallel import Unavailable

        try:
            done, failures = _soak_parallel(args, started)
            return _summary(args, done, failures, started)
        except Unavailable as exc:  # another session on the database: no copies
            sys.stderr.write(f"no worker databases ({exc}); running in this process\n")
    outer = transaction.atomic()
    outer._from_testcase = True  # the services' durable transactions open inside, as in tests
    with outer:
        world = World.create()
        done = 0
        for seed in range(args.first, args.first + args.seeds):
            result = run_seed(seed, world, extra_patches=extra)
            done += 1
            if not result.ok:
                failures.append(result)
                sys.stderr.write("\n" + result.report() + "\n")
            if done % 10 == 0 or done == args.seeds:
                progress(done, args.seeds, len(failures), started)
            if len(failures) >= args.stop_after:
                break
        transaction.set_rollback(True)
    return _summary(args, done, failures, started)


def _soak_parallel(args, started: float) -> tuple[int, list]:
    from tests.simulation.parallel import run_parallel

    def report(run, new_failures) -> None:
        for result in new_failures:
            sys.stderr.write("\n" + result.report() + "\n")
        progress(run.done, args.seeds, len(run.failures), started)

    run = run_parallel(
        range(args.first, args.first + args.seeds),
        workers=args.workers,
        stop_after=args.stop_after,
        mutant=args.mutant,
        progress=report,
    )
    return run.done, run.failures


def _summary(args, done: int, failures: list, started: float) -> int:
    elapsed = time.perf_counter() - started
    sys.stderr.write("\n")
    print(
        f"{done:,} seeds in {elapsed:,.1f} s ({done / elapsed:,.1f}/s), "
        f"{len(failures)} failed" + (f" (mutant {args.mutant})" if args.mutant else "")
    )
    for result in failures:
        print(f"  seed {result.seed}: {result.violations[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
