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

A failing seed prints its invariants, its trace and the command that replays it. Exit status 1
when any seed failed. DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/gpucredits_bench.
"""

from __future__ import annotations

import argparse
import logging
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
    args = parser.parse_args()

    url = _django.database_url()
    _django.ensure_database(url)
    _django.setup(url)

    from django.db import transaction

    from tests.simulation import mutants
    from tests.simulation.harness import World, run_seed

    extra = getattr(mutants, args.mutant) if args.mutant else None
    logging.disable(logging.CRITICAL)
    failures = []
    started = time.perf_counter()
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
