"""The fault simulation (tests/simulation/harness.py): thousands of seeds of tiny worlds driven
through the real services under a seeded fault schedule, each checked against the invariants
(tests/simulation/invariants.py) after it settles. A failure prints its seed and how to replay
it; `bench/soak.py` runs many more seeds."""

from __future__ import annotations

import os
import time

import pytest

from tests.simulation import mutants
from tests.simulation.billing import drives_billing
from tests.simulation.harness import run_seed
from tests.simulation.parallel import Unavailable, run_parallel, trace_digest

# make test's default: 2,000 seeds (issue 13) over 2 worker processes (simulation/parallel.py).
# A seed costs ~87 statements through Django's cursor (plus the ledger's prepared ones) and
# ~95–110 ms of CPU, about 40 % of it PostgreSQL's (docs/reliability.md, "Speed", fourth pass).
# SIM_SEEDS for more or fewer (bench/soak.py for many more), SIM_WORKERS=1 for one process.
SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))
FIRST_SEED = int(os.environ.get("SIM_FIRST_SEED", "0"))
WORKERS = int(os.environ.get("SIM_WORKERS", str(min(2, os.cpu_count() or 1))))
MAX_REPORTED = 5


def run_seeds(world, seeds, *, stop_after: int = MAX_REPORTED, **kwargs):
    failures = []
    for seed in seeds:
        result = run_seed(seed, world, **kwargs)
        if not result.ok:
            failures.append(result)
            if len(failures) >= stop_after:
                break
    return failures


# Marked so pytest-django creates the test database even when this test runs alone (it creates
# only the databases the selected tests ask for); transactional: the workers' copies need the
# caller to hold no transaction.
@pytest.mark.django_db(transaction=True)
def test_every_seed_keeps_the_invariants_under_faults(request, django_db_setup, django_db_blocker):
    seeds = range(FIRST_SEED, FIRST_SEED + SEEDS)
    started = time.perf_counter()
    run = None
    if WORKERS > 1:
        try:
            with django_db_blocker.unblock():  # the workers' copies need no session on it
                run = run_parallel(seeds, workers=WORKERS, stop_after=MAX_REPORTED)
        except Unavailable as exc:
            print(f"\nfault simulation: no worker databases ({exc}); running in this process")
    if run is not None:
        failures, done, workers = run.failures, run.done, WORKERS
    else:
        failures, done, workers = run_seeds(request.getfixturevalue("world"), seeds), SEEDS, 1
    elapsed = time.perf_counter() - started
    each = 1000 * elapsed / max(done, 1)
    print(
        f"\nfault simulation: {done} seeds in {elapsed:.1f} s ({each:.0f} ms each, "
        f"{workers} process(es))"
    )
    assert not failures, "\n\n".join(r.report() for r in failures)
    if run is not None and seeds:
        # A seed replays the same in the test process as in a worker.
        seed = seeds[len(seeds) // 2]
        again = run_seed(seed, request.getfixturevalue("world"))
        assert trace_digest(again.trace) == run.digests[seed], f"seed {seed} diverged"


def test_replay(world, request):
    """One seed again, with its whole trace: SIM_SEED=N or --seed N."""
    seed = os.environ.get("SIM_SEED") or request.config.getoption("--seed", default=None)
    if seed is None:
        pytest.skip("replay needs SIM_SEED=N or --seed N")
    result = run_seed(int(seed), world)
    print("\n" + "\n".join(result.trace))
    assert result.ok, result.report()


def test_a_seed_replays_identically(world):
    first = run_seed(7, world)
    again = run_seed(7, world)
    assert first.trace == again.trace
    assert len(first.trace) > 5


def test_cheap_savepoints_change_nothing_a_seed_does(world, monkeypatch):
    """The harness sends a seed's transactions as savepoints folded into the next statement and
    never released (harness._Savepoints): every seed of a mixed range (connection losses,
    rollbacks, HTTP and billing seeds among them) runs the same as with plain SAVEPOINT /
    RELEASE statements, and ends with the same violations (none)."""
    cheap = [run_seed(seed, world) for seed in range(40)]
    monkeypatch.setenv("SIM_PLAIN_SAVEPOINTS", "1")
    plain = [run_seed(seed, world) for seed in range(40)]
    assert any("connection lost" in line for r in plain for line in r.trace)
    for a, b in zip(cheap, plain, strict=True):
        assert a.trace == b.trace, f"seed {a.seed} diverged"
        assert a.violations == b.violations == []


def test_a_capture_repeated_on_redelivery_is_caught_within_100_seeds(world):
    failures = run_seeds(
        world, range(100), stop_after=1, extra_patches=mutants.capture_twice_on_redelivery
    )
    assert failures, "the broken capture went unnoticed for 100 seeds"
    first = failures[0]
    print(f"\nbroken capture caught by seed {first.seed}:\n{first.report()}")
    assert any("balance fell by" in v for v in first.violations), first.report()


def test_a_finish_that_gives_up_on_connection_loss_is_caught(world):
    """Issue 13's finish bug (the GPU's work thrown away when the terminal transaction loses
    its connection), with the fix reverted: the simulation finds it."""
    failures = run_seeds(
        world, range(200), stop_after=1, extra_patches=mutants.finish_without_retry
    )
    assert failures, "the finish without retry went unnoticed for 200 seeds"
    first = failures[0]
    print(f"\nfinish without retry caught by seed {first.seed}:\n{first.report()}")
    assert any("on the GPU but was recorded" in v for v in first.violations), first.report()


def test_a_top_up_granted_again_by_a_repeated_webhook_is_caught_within_100_seeds(world):
    """A purchase granted each time its PaymentIntent's success is processed (the charge's
    answer, then the webhook): only billing seeds can see it, so only they run. Measured: seed
    19 catches it (the second billing seed), and 18 of the 43 billing seeds in 0-399 do."""
    billing_seeds = [seed for seed in range(100) if drives_billing(seed)]
    failures = run_seeds(
        world, billing_seeds, stop_after=1, extra_patches=mutants.grant_twice_on_repeated_webhook
    )
    assert failures, f"the repeated grant went unnoticed in {len(billing_seeds)} billing seeds"
    first = failures[0]
    print(f"\nrepeated grant caught by seed {first.seed}:\n{first.report()}")
    assert any("grant(s)" in v for v in first.violations), first.report()


def test_a_customer_fault_failure_after_its_hold_expired_finishes_cleanly(world):
    """Seed 2521 found it: a [reject] (customer-fault) failure whose hold was swept during a
    long attempt crashed the finish (hold_capture on an expired hold raised), the job lapsed
    and its GPU work was redone. `job_fail` now charges nothing when the hold is gone."""
    result = run_seed(2521, world)
    assert result.ok, result.report()
