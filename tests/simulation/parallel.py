"""The fault simulation's seeds spread over worker processes (2 on the 2-core test machine).

Each worker has a database of its own: a copy of the test database (`CREATE DATABASE …
TEMPLATE`, made while the workers start), named `<test database>_sim<N>` and dropped at the
end. One shared database is not enough: the services write rows keyed by more than the world
(the dirty-hour rows of the GPU-run trigger are keyed by the simulated hour, which every seed
shares), so two workers' uncommitted seeds would wait on each other, and deadlock. A template
must have no other session, so the caller's connection is closed first; when the copy is
refused anyway (another session holds the database), `Unavailable` is raised and the caller
runs the seeds itself.

Each worker is a fresh interpreter (multiprocessing's *spawn*: nothing of the test process, its
open connection, its threads, is inherited) that sets Django up on its copy. It runs its
share of the seeds in chunks: one transaction per chunk, its own `World` inside it, every seed
in a savepoint as in the serial run, the whole transaction rolled back at the chunk's end. The
parent only collects failures (and each seed's trace digest, so a test can check a seed
replays identically whichever process ran it).

`SIM_WORKERS=1` runs everything in the test process instead (`harness.run_seed` directly).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 25  # seeds per task: small enough to balance the workers, large for a cheap World
TIMEOUT_S = 600  # a chunk that takes this long is stuck: fail, don't hang


class Unavailable(Exception):
    """The worker databases could not be made (the source is in use): run serially."""


@dataclass
class ParallelRun:
    failures: list  # SeedResult, by seed
    digests: dict  # seed -> digest of its trace
    done: int  # seeds run


def trace_digest(trace: list[str]) -> str:
    return hashlib.sha256("\n".join(trace).encode()).hexdigest()[:16]


def run_parallel(
    seeds: range,
    *,
    workers: int,
    stop_after: int,
    mutant: str | None = None,
    progress: Callable[[ParallelRun, list], None] | None = None,
) -> ParallelRun:
    """Run `seeds` over `workers` spawned processes, each on a copy of the current database
    (the test database, or bench/soak.py's); stop once `stop_after` seeds failed.
    `progress(run, new_failures)` is called after each chunk. The caller must hold no
    transaction: its connection is closed (Django opens a new one when next needed)."""
    from django.conf import settings
    from django.db import connection

    database = dict(connection.settings_dict)
    names = [f"{database['NAME']}_sim{n}" for n in range(1, workers + 1)]
    connection.close()
    chunks = [seeds[i : i + CHUNK] for i in range(0, len(seeds), CHUNK)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    run = ParallelRun(failures=[], digests={}, done=0)
    try:
        with context.Pool(
            processes=workers,
            initializer=_worker_init,
            initargs=(settings.SETTINGS_MODULE, database, queue),
        ) as pool:
            # The workers start (a fresh interpreter setting Django up: seconds) while the
            # copies are made; each takes a copy's name as soon as that copy exists.
            _copies_make(database, names, made=queue.put)
            results = pool.imap_unordered(_run_chunk, [(c.start, c.stop, mutant) for c in chunks])
            for _ in chunks:
                failures, digests = results.next(timeout=TIMEOUT_S)
                run.failures.extend(failures)
                run.digests.update(digests)
                run.done += len(digests)
                if progress is not None:
                    progress(run, failures)
                if len(run.failures) >= stop_after:
                    break
            pool.terminate()  # the rest (after enough failures) is not needed
    finally:
        _copies_drop(database, names)
    run.failures.sort(key=lambda r: r.seed)
    return run


def _admin(database: dict):
    import psycopg

    return psycopg.connect(
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def _copies_make(database: dict, names: list[str], *, made: Callable[[str], None]) -> None:
    """Copy the database once per name, calling `made(name)` after each. WAL_LOG (block by
    block through the WAL), not FILE_COPY: a copy of the small test database then costs no
    checkpoint, which flushes every other database's dirty pages first."""
    import psycopg
    from psycopg import sql

    _copies_drop(database, names)  # a run killed before its cleanup
    with _admin(database) as admin:
        for name in names:
            try:
                admin.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY WAL_LOG").format(
                        sql.Identifier(name), sql.Identifier(database["NAME"])
                    )
                )
            except psycopg.Error as exc:
                _copies_drop(database, names)
                raise Unavailable(str(exc).splitlines()[0]) from exc
            made(name)


def _copies_drop(database: dict, names: list[str]) -> None:
    from psycopg import sql

    with _admin(database) as admin:
        for name in names:
            # Only our own copies, whose workers are gone (FORCE: one that died mid-query).
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- In the worker process ----------------------------------------------------------------------


def _worker_init(settings_module: str, database: dict, names) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    from django.db import connections
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connections["default"].settings_dict.update({**database, "NAME": names.get(timeout=60)})
    logging.disable(logging.CRITICAL)
    # Millions of short-lived ORM objects, no long-lived garbage: the cyclic collector's
    # frequent passes over the imported modules' objects are wasted work here.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _run_chunk(args) -> tuple[list, dict]:
    first, stop, mutant = args
    from django.db import transaction

    from tests.simulation import mutants
    from tests.simulation.harness import World, run_seed

    extra = getattr(mutants, mutant) if mutant else None
    failures, digests = [], {}
    outer = transaction.atomic()
    outer._from_testcase = True  # the services' durable transactions open inside, as in tests
    with outer:
        world = World.create()
        for seed in range(first, stop):
            result = run_seed(seed, world, extra_patches=extra)
            digests[seed] = trace_digest(result.trace)
            if not result.ok:
                failures.append(result)
        transaction.set_rollback(True)
    return failures, digests
