"""Where the fault simulation (tests/simulation/harness.py) hooks into the services: the
module-level functions it wraps for a seed, and the stand-ins it puts in their place."""

from __future__ import annotations

import types
import uuid

from django.db import connection

from generations import tasks
from generations.services import cancel as cancel_module
from generations.services import execution, reaper, reconnect, spool, submission
from infra_costs import services as infra_costs_services


def install(patches, sim) -> None:
    """Wrap the boundaries for one seed (`patches.undo()` restores them)."""
    patches.set(tasks, "run_generation", types.SimpleNamespace(apply_async=sim.apply_async))
    patches.set(reaper, "broker_scan", sim.broker_scan)
    patches.set(reaper, "unacked_forget", sim.unacked_forget)
    # A lost connection is simulated: "reconnecting" keeps the seed's one real connection,
    # and the finish's backoff sleeps (with the seed's jitter) move the simulated clock.
    patches.set(execution, "connection", _KeepConnection())
    patches.set(reconnect, "connection", _KeepConnection())  # (the claim's retries)
    patches.set(spool, "connection", _KeepConnection())
    patches.set(execution, "time", types.SimpleNamespace(sleep=sim.sleep))
    patches.set(reconnect, "time", types.SimpleNamespace(sleep=sim.sleep))
    patches.set(execution, "random", sim.rng)
    # Deterministic job ids (the reaper orders by them on ties): drawn from the seed.
    patches.set(
        submission,
        "uuid",
        types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=sim.rng.getrandbits(128), version=4)),
    )
    real_get_backend = execution.get_backend

    def get_backend(name):
        real = real_get_backend(name)
        return types.SimpleNamespace(
            pick_node=real.pick_node,
            run=lambda request, *, node: sim.backend_run(real, request, node=node),
        )

    patches.set(execution, "get_backend", get_backend)
    patches.set(execution, "_Heartbeat", lambda *args, **kwargs: _NoHeartbeat(sim, *args))
    patches.set(execution, "_finish", sim.finish_wrapper(execution._finish))
    for name in ("gpu_run_start", "gpu_run_finish"):
        patches.set(
            infra_costs_services, name, sim.db_fault(name, getattr(infra_costs_services, name))
        )
    for name in ("hold_capture", "hold_release"):
        patches.set(execution, name, sim.db_fault(name, getattr(execution, name)))
    patches.set(
        cancel_module, "hold_release", sim.db_fault("hold_release", cancel_module.hold_release)
    )


class _KeepConnection:
    """`django.db.connection` whose close() does nothing: the seed runs in a savepoint on one
    connection, so a simulated connection loss must not really drop it."""

    def close(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(connection, name)


class _NoHeartbeat:
    """The lease is renewed by the simulated clock's rules instead: a run shorter than the lease
    never lapses, a stalled one (the `stall` fault) does."""

    def __init__(self, sim, job_id=None, attempt=None, *args):
        # The attempt about to run, so the backend stand-in needn't read it back.
        if job_id is not None and attempt is not None:
            sim.running[str(job_id)] = attempt

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
