"""A deterministic fault simulation of the generation lifecycle (TigerBeetle's VOPR as the model).

One *seed* is one tiny world: 2–6 jobs of 1–2 organizations, driven through the real services
(`generation_submit`, `generation_run`, `generation_cancel`, `jobs_reap`, `rate_set`) against
PostgreSQL by a scheduler that draws every choice — the next step, which message a worker takes,
every fault — from `random.Random(seed)`. Time is simulated (time_machine, frozen and moved by
the scheduler); the broker is an in-memory list; faults are injected from outside by wrapping
module-level functions at the boundaries (restored after each seed):

* broker unavailable (the run task's `apply_async` raises as kombu does when Redis is away, so
  the real `enqueue` and its publish bookkeeping run; the reaper's `broker_scan` reads the
  in-memory queue and the messages dead workers hold unacknowledged);
* connection loss inside a transaction (`django.db.OperationalError` from `gpu_run_start`,
  `gpu_run_finish`, `hold_capture`, `hold_release`: the durable transaction rolls back);
* worker death at a step boundary (after the claim, after the GPU run before the finish): the
  delivery stops, the message comes back later (acks_late), the lease lapses;
* a stalled worker (the clock moves past its lease while it runs, other steps — the reaper,
  other deliveries — interleave inside the GPU run);
* duplicate and out-of-order deliveries, concurrent cancels, price changes, node failures and
  timeouts (`[fail]` prompts, a backend timeout).

Then the seed *settles* (broker up, no faults: every message delivered, the clock past the
lease and the requeue horizon, the reaper, again until quiet) and the invariants are checked
(`invariants`). Each seed runs inside a savepoint rolled back at its end, on one connection,
over organizations and models created once (`World`). About one seed in ten submits and
cancels through the HTTP API instead (`through_api`); `parallel` spreads the seeds over worker
processes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import tempfile
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import time_machine
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, transaction
from django.test import override_settings
from kombu.exceptions import OperationalError as KombuOperationalError

from config import rows
from config.errors import ServiceError
from credits import services as credits_services
from generations import services
from generations.backends import BackendError
from generations.models import Job, JobStatus
from tests.simulation.billing import SETTINGS as BILLING_SETTINGS
from tests.simulation.billing import Billing, drives_billing
from tests.simulation.boundaries import install
from tests.simulation.through_api import HttpDriver, drives_http

LEASE_S = 30
REQUEUE_AFTER_S = 120
MAX_ATTEMPTS = 3
BASE_TIME = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
SIM_SETTINGS = {
    "GENERATIONS_SIMULATED_SPEEDUP": 0,
    "GENERATIONS_LEASE_S": LEASE_S,
    "GENERATIONS_REQUEUE_AFTER_S": REQUEUE_AFTER_S,
    "GENERATIONS_MAX_ATTEMPTS": MAX_ATTEMPTS,
    "GENERATIONS_RESULT_CACHE_TTL_S": 0,
}


# The harness's own reads on every GPU run and settle round, as fixed statements (config.rows).
_CURRENT_SQL = f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s AND status = %s AND attempts = %s"
_STATUSES_SQL = f"SELECT status FROM {Job._meta.db_table} WHERE id = ANY(%s::uuid[])"


class WorkerDied(BaseException):
    """A worker process killed at a step boundary (SIGKILL): not an Exception, so nothing in
    the services catches it — it unwinds the delivery like a dead process stops it."""


# --- The world: created once per test, shared by every seed ---------------------------------


@dataclass
class World:
    orgs: list
    models: list
    prices: dict  # model slug -> price in force (credits)

    @classmethod
    def create(cls) -> World:
        from credits.billing.catalog import packs_ensure_defaults
        from infra_costs.models import Node
        from tests.factories import make_account, make_ai_model, make_pool

        packs_ensure_defaults()  # auto top-up's pack (tests/simulation/billing.py)
        accounts = [
            make_account(plan="studio", credits="100000", slug="sim-studio"),
            make_account(plan="creator", credits="100000", slug="sim-creator"),
        ]
        models = [
            make_ai_model("sim-a100", pool=make_pool("a100"), credits="5"),
            make_ai_model("sim-l4", pool=make_pool("l4", gpu_type="L4", rate="0.80"), credits="2"),
        ]
        # The simulated backend's nodes (`<pool>-sim-<n>`) known already, as in a running
        # system: a GPU run starts in one statement instead of first registering its node
        # inside every seed (the rolled-back savepoint forgot it each time).
        for model in models:
            nodes = model.backend_config.get("nodes", settings.GENERATIONS_SIMULATED_NODES)
            for n in range(1, max(1, int(nodes)) + 1):
                Node.objects.get_or_create(
                    name=f"{model.pool.slug}-sim-{n}", defaults={"pool": model.pool}
                )
        return cls(
            orgs=[a.organization for a in accounts],
            models=models,
            prices={"sim-a100": Decimal(5), "sim-l4": Decimal(2)},
        )


# --- Patching: module-level functions wrapped at the boundaries, restored after the seed ------


class Patches:
    def __init__(self):
        self._saved: list[tuple[object, str, object]] = []

    def set(self, target, name: str, value) -> None:
        if not hasattr(target, name):  # a boundary that moved: nothing to wrap there
            return
        self._saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def undo(self) -> None:
        while self._saved:
            target, name, value = self._saved.pop()
            setattr(target, name, value)


# --- Per-seed state -----------------------------------------------------------------------------


@dataclass
class Message:
    job_id: str
    pool: str


@dataclass
class Sim:
    seed: int
    world: World
    rng: random.Random
    traveller: object
    broker_down: bool = False
    faults_on: bool = True
    queue: list = field(default_factory=list)
    jobs: list = field(default_factory=list)  # job ids, in submission order
    pinned: dict = field(default_factory=dict)  # job id -> price in force at its submission
    completed: dict = field(default_factory=dict)  # (job id, attempt) -> backend outcome
    died: set = field(default_factory=set)  # (job id, attempt) whose worker died after the run
    trace: list = field(default_factory=list)
    depth: int = 0
    pending_submits: list = field(default_factory=list)
    unacked: dict = field(default_factory=dict)  # tag -> (message, taken at): dead workers'
    db_down_until: datetime = BASE_TIME
    crashes: list = field(default_factory=list)  # tasks that raised an unexpected error
    hooks_base: int = 0  # on-commit hooks registered before the seed (none of ours)
    # Fault probabilities (per boundary crossing), drawn once per seed so seeds differ in mood.
    p: dict = field(default_factory=dict)
    http: object = None  # an HttpDriver when the seed goes through the API
    billing: object = None  # a billing.Billing when the seed has auto top-up and webhooks
    owner: dict = field(default_factory=dict)  # job id -> its organization
    running: dict = field(default_factory=dict)  # job id -> the attempt its heartbeat started

    # -- clock
    def now(self) -> datetime:
        from django.utils import timezone

        return timezone.now()

    def advance(self, seconds: float) -> None:
        self.traveller.shift(timedelta(seconds=seconds))

    def log(self, what: str) -> None:
        self.trace.append(f"t+{(self.now() - BASE_TIME).total_seconds():8.3f}s {what}")

    def chance(self, name: str) -> bool:
        return self.faults_on and self.rng.random() < self.p.get(name, 0)

    # -- boundaries ----------------------------------------------------------------------------
    def apply_async(self, *, args, queue: str, **kwargs) -> None:
        """The broker's publish (`run_generation.apply_async`): raises while it is down, as
        kombu does when Redis is away; the real `enqueue` around it does its bookkeeping."""
        job_id, pool = str(args[0]), queue.removeprefix("gpu.")
        if self.broker_down:
            self.log(f"publish {job_id[:8]} refused: broker down")
            raise KombuOperationalError("Error 111 connecting to redis: Connection refused.")
        self.queue.append(Message(job_id, pool))
        if self.chance("dup_publish"):  # the broker hands the same message out twice
            self.queue.append(Message(job_id, pool))

    def broker_scan(self, *, pools, now_ts: float, stale_after_s: float, limit: int):
        """The reaper's look at the broker: the in-memory queue and what dead workers hold."""
        if self.broker_down:
            raise KombuOperationalError("Error 111 connecting to redis: Connection refused.")
        from generations.broker import BrokerScan

        scan = BrokerScan(complete=set(pools))
        scan.present = {m.job_id for m in self.queue}
        for tag, (message, taken_ts) in self.unacked.items():
            if now_ts - taken_ts > stale_after_s:
                scan.stale.setdefault(message.job_id, set()).add(tag)
            else:
                scan.present.add(message.job_id)
        for job_id in scan.present:
            scan.stale.pop(job_id, None)
        return scan

    def unacked_forget(self, *, tags) -> int:
        dropped = 0
        for tag in tags:
            dropped += self.unacked.pop(tag, None) is not None
        return dropped

    def db_point(self, point: str) -> None:
        """A connection lost here (one-off, or the database away for a while)."""
        if not self.faults_on:
            return
        if self.now() < self.db_down_until or self.chance(point):
            self.log(f"connection lost in {point}")
            raise OperationalError("terminating connection due to administrator command")
        if self.chance("db_outage"):
            self.db_down_until = self.now() + timedelta(seconds=self.rng.uniform(1, 20))
            self.log(
                f"database away until t+{(self.db_down_until - BASE_TIME).total_seconds():.1f}s"
            )
            raise OperationalError("terminating connection due to administrator command")

    def sleep(self, seconds: float) -> None:
        """The services' backoff sleeps move the simulated clock."""
        self.advance(seconds)

    def db_fault(self, point: str, real):
        def wrapped(*args, **kwargs):
            self.db_point(point)
            return real(*args, **kwargs)

        return wrapped

    def finish_wrapper(self, real):
        def wrapped(job_id, *, attempt, **kwargs):
            if (str(job_id), attempt) in self.died:
                raise WorkerDied()
            return real(job_id, attempt=attempt, **kwargs)

        return wrapped

    # -- the backend: the GPU run, where other steps interleave --------------------------------
    def backend_run(self, real_backend, request, *, node):
        job_id = request.job_id
        attempt = self.running.pop(str(job_id), None)  # told by the heartbeat (boundaries)
        if attempt is None:
            attempt = Job.objects.filter(pk=job_id).values_list("attempts", flat=True).first()
        if self.chance("die_after_claim"):
            self.log(f"worker dies after claiming {job_id[:8]}#{attempt}")
            raise WorkerDied()
        if self.chance("stall"):  # a stalled worker: its lease lapses while others move on
            self.advance(LEASE_S + self.rng.uniform(1, LEASE_S))
            self.log(f"worker stalls on {job_id[:8]}#{attempt}")
            if self.depth < 2 and self.rng.random() < 0.7:  # meanwhile the reaper runs…
                self.depth += 1
                try:
                    self.reap()
                    self.committed()
                    if self.queue and self.rng.random() < 0.7:  # …and another worker
                        self.deliver()
                        self.committed()
                finally:
                    self.depth -= 1
        if self.depth < 2 and self.chance("interleave"):
            self.depth += 1
            try:
                for _ in range(self.rng.randint(1, 3)):
                    self.step()
            finally:
                self.depth -= 1
        if self.chance("node_timeout"):
            self.advance(1)
            self.log(f"node timeout on {job_id[:8]}#{attempt}")
            outcome = BackendError("Timed out.", code="timeout", node=node)
        else:
            try:
                outcome = real_backend.run(request, node=node)
            except BackendError as exc:
                outcome = exc
        self.advance(self.rng.uniform(0.1, 5))
        current = bool(rows.execute(_CURRENT_SQL, [job_id, JobStatus.RUNNING, attempt]))
        if current:
            self.completed[(job_id, attempt)] = (
                "failed" if isinstance(outcome, BackendError) else "succeeded"
            )
        if self.chance("die_before_finish"):
            self.log(f"worker dies after the GPU run of {job_id[:8]}#{attempt}")
            self.died.add((job_id, attempt))
        if isinstance(outcome, BackendError):
            raise outcome
        return outcome

    def crashed(self, what: str, job_id: str, exc: Exception) -> None:
        """A task raised something other than an injected fault: Celery would ack it and log
        a traceback; the simulation counts it as a bug (invariant "no task crashes")."""
        text = f"{what} of {job_id} crashed: {exc.__class__.__name__}: {str(exc)[:160]}"
        self.crashes.append(text)
        self.log("  " + text)

    def committed(self) -> None:
        """Run the on-commit hooks of the transactions that just committed (inside the seed's
        savepoint nothing really commits, so Django keeps them): the publish after an
        acceptance or a requeue, the dispatch after a node freed up."""
        hooks = connection.run_on_commit
        while len(hooks) > self.hooks_base:
            pending = hooks[self.hooks_base :]
            del hooks[self.hooks_base :]
            for _sids, callback, _robust in pending:
                callback()

    # -- steps ---------------------------------------------------------------------------------
    def submit(self) -> None:
        org, model_slug, prompt = self.pending_submits.pop(0)
        params = {"prompt": prompt, "seed": self.rng.randrange(1000)}
        key = f"sim-{self.seed}-{len(self.jobs)}"
        if self.http is not None:  # through the API (tests/simulation/through_api.py)
            job_id = self.http.submit(
                organization=org, model_slug=model_slug, params=params, idempotency_key=key
            )
            if job_id is None:
                return
        else:
            try:
                job, _created = services.generation_submit(
                    organization=org, model_slug=model_slug, params=params, idempotency_key=key
                )
            except ServiceError as exc:
                self.log(f"submit refused: {exc.__class__.__name__}")
                return
            except OperationalError:
                self.log("submit failed: connection lost")
                return
            job_id = str(job.pk)
        self.owner[job_id] = org
        self.jobs.append(job_id)
        self.pinned[job_id] = self.world.prices[model_slug]
        self.log(f"submit {job_id[:8]} {model_slug} {prompt!r}")

    def deliver(self) -> None:
        index = self.rng.randrange(len(self.queue))  # out of order
        message = self.queue.pop(index)
        if self.chance("redeliver"):  # the same message delivered again later
            self.queue.append(Message(message.job_id, message.pool))
        self.log(f"deliver {message.job_id[:8]}")
        try:
            result = services.generation_run(job_id=message.job_id, worker="sim-worker")
            self.log(f"  run {message.job_id[:8]} -> {result}")
        except WorkerDied:
            # acks_late: the dead worker's message stays unacknowledged until the visibility
            # timeout (settle) puts it back, unless the reaper drops it as stale.
            self.log(f"  worker died running {message.job_id[:8]}; message unacked")
            self.unacked[f"tag-{len(self.trace)}".encode()] = (message, self.now().timestamp())
        except OperationalError:
            self.log(f"  run {message.job_id[:8]} raised OperationalError (message acked)")
        except Exception as exc:  # a task that crashes: Celery acks it, the job is left as is
            self.crashed("run", message.job_id, exc)

    def cancel(self) -> None:
        job_id = self.rng.choice(self.jobs)
        if self.http is not None:
            if self.http.cancel(organization=self.owner[job_id], job_id=job_id):
                self.log(f"cancel {job_id[:8]}")
            return
        try:
            services.generation_cancel(job=Job(pk=job_id))
            self.log(f"cancel {job_id[:8]}")
        except ServiceError:
            self.log(f"cancel {job_id[:8]} refused (not queued)")
        except OperationalError:
            self.log(f"cancel {job_id[:8]} failed: connection lost")

    def reap(self) -> None:
        try:
            self.log(f"reaper {services.jobs_reap()}")
        except OperationalError:
            self.log("reaper: connection lost")

    def price_change(self) -> None:
        model = self.rng.choice(self.world.models)
        credits = Decimal(self.rng.randint(1, 9))
        services.rate_set(model=model, credits=credits, reason="simulated change", actor=None)
        self.world.prices[model.slug] = credits
        self.log(f"price of {model.slug} -> {credits}")

    def step(self) -> None:
        """One step chosen by the seed."""
        choices = []
        if self.pending_submits and self.depth == 0:
            choices += [self.submit] * 4
        if self.queue:
            choices += [self.deliver] * 6
        if self.jobs:
            choices += [self.cancel]
        choices += [self.reap, self.price_change, self._clock, self._broker, self.hold_sweep]
        if self.billing is not None:
            choices += self.billing.steps()
        self.rng.choice(choices)()
        self.committed()
        self.advance(0.001)

    def hold_sweep(self) -> None:
        """The credits app's stale-hold sweep after a long silence (the clock jumps past the
        hold timeout): a job that waited that long fails `hold_expired`, released."""
        if not self.chance("hold_sweep"):
            return
        self.advance(settings.CREDITS_HOLD_TIMEOUT_S + 1)
        try:
            self.log(
                f"clock +{settings.CREDITS_HOLD_TIMEOUT_S + 1}s, hold sweep "
                f"{credits_services.holds_release_stale()}"
            )
        except OperationalError:
            self.log("hold sweep: connection lost")

    def _clock(self) -> None:
        seconds = self.rng.choice([1, 5, LEASE_S + 1, REQUEUE_AFTER_S + 1])
        self.advance(seconds)
        self.log(f"clock +{seconds}s")

    def _broker(self) -> None:
        if self.chance("broker_flip") or self.broker_down:
            self.broker_down = not self.broker_down
            self.log("broker " + ("down" if self.broker_down else "up"))

    def settle(self) -> None:
        """No more faults: deliver everything, move the clock past every lease and horizon,
        reap, until nothing moves."""
        self.faults_on = False
        self.broker_down = False
        self.log("--- settle")
        for _ in range(4 * MAX_ATTEMPTS):
            # The visibility timeout: messages dead workers held come back.
            self.queue.extend(message for message, _ in self.unacked.values())
            self.unacked.clear()
            while self.queue:
                message = self.queue.pop(0)
                # A WorkerDied here is the late finish of a worker that died: nothing to do.
                try:
                    services.generation_run(job_id=message.job_id, worker="sim-settle")
                except WorkerDied:  # the late finish of a worker that died: nothing to do
                    pass
                except Exception as exc:
                    self.crashed("run", message.job_id, exc)
                self.committed()
            if all(s in TERMINAL for (s,) in rows.execute(_STATUSES_SQL, [self.jobs])):
                break
            self.advance(max(LEASE_S, REQUEUE_AFTER_S) + 1)
            self.log(f"settle reaper {services.jobs_reap()}")
            self.committed()
            if not self.queue and not self.unacked:
                self.advance(3600)  # nothing published: whatever the lapse, a day goes by
        if self.billing is not None:
            self.billing.settle()


def _draw_mood(rng: random.Random) -> dict:
    """Per-seed fault probabilities: some seeds are calm, some are storms."""
    storm = rng.random()

    def p(high: float) -> float:
        return rng.choice([0, 0, high * storm, high])

    return {
        "dup_publish": p(0.3),
        "redeliver": p(0.3),
        "gpu_run_start": p(0.2),
        "gpu_run_finish": p(0.3),
        "hold_capture": p(0.3),
        "hold_release": p(0.3),
        "die_after_claim": p(0.25),
        "die_before_finish": p(0.2),
        "stall": rng.choice([0, 0.1, 0.3]),
        "interleave": p(0.5),
        "node_timeout": p(0.15),
        "broker_flip": p(0.5),
        "db_outage": p(0.05),
        "hold_sweep": p(0.5),
    }


@contextlib.contextmanager
def seed_savepoint(patches: Patches | None = None):
    """A savepoint rolled back at the end. Marked as a test case's block so the services'
    durable transactions (`atomic(durable=True)`) may open inside it, as they do inside a
    Django TestCase. Inside it, the services' transactions are nested savepoints, sent the
    cheap way (`_Savepoints`) unless SIM_PLAIN_SAVEPOINTS=1."""
    atomic = transaction.atomic()
    atomic._from_testcase = True
    atomic.__enter__()
    savepoints = None
    if patches is not None and os.environ.get("SIM_PLAIN_SAVEPOINTS") != "1":
        savepoints = _Savepoints(patches)
    try:
        yield
    finally:
        if savepoints is not None:
            savepoints.remove()
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


class _Savepoints:
    """The services' transactions inside a seed, without a statement of their own: a third of
    a seed's statements were SAVEPOINT/RELEASE pairs. No `RELEASE SAVEPOINT` is sent: a kept
    savepoint is to every later statement what a released one is (its work stays; rolling
    back a newer one undoes only the newer one's; the seed's own rollback undoes them all),
    and the seed keeps a few dozen at most. A `SAVEPOINT` is sent in front of the next
    statement, in its query string (simple protocol: `SAVEPOINT s; SELECT …`, the cursor
    moved on to the statement's own result), or on its own before a statement that can't
    carry it (the ledger's prepared statements, `executemany`); one rolled back or released
    before any statement ran was never needed and is just forgotten. So the services see the
    transactions they would, in half the statements."""

    def __init__(self, patches: Patches):
        self.db = db = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the proxy
        self.pending: list[str] = []
        self.real_create = db._savepoint
        self.real_rollback = db._savepoint_rollback
        db._savepoint = self.create
        db._savepoint_rollback = self.rollback
        db._savepoint_commit = self.release
        db.execute_wrappers.append(self.wrap)
        from credits.ledger import _core as ledger_core

        real_cursor = ledger_core.psycopg.Cursor

        def ledger_cursor(conn):
            self.flush()
            return real_cursor(conn)

        patches.set(
            ledger_core,
            "psycopg",
            types.SimpleNamespace(Cursor=ledger_cursor),
        )

    def remove(self) -> None:
        self.pending.clear()  # the seed's rollback follows: nothing left to send
        for name in ("_savepoint", "_savepoint_rollback", "_savepoint_commit"):
            self.db.__dict__.pop(name, None)
        if self.wrap in self.db.execute_wrappers:
            self.db.execute_wrappers.remove(self.wrap)

    def create(self, sid: str) -> None:
        self.pending.append(sid)

    def rollback(self, sid: str) -> None:
        if sid in self.pending:  # never sent: nothing ran since, nothing to undo
            del self.pending[self.pending.index(sid) :]
            return
        self.pending.clear()  # newer than `sid`, unsent: gone with it
        self.real_rollback(sid)

    def release(self, sid: str) -> None:
        if sid in self.pending:
            del self.pending[self.pending.index(sid) :]

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for sid in pending:
            self.real_create(sid)

    def wrap(self, execute, sql, params, many, context):
        if not self.pending:
            return execute(sql, params, many, context)
        if many:
            self.flush()
            return execute(sql, params, many, context)
        pending, self.pending = self.pending, []
        create = self.db.ops.savepoint_create_sql
        prefix = "".join(f"{create(sid)}; " for sid in pending)
        result = execute(prefix + sql, params, many, context)
        cursor = context["cursor"]
        for _ in pending:
            cursor.nextset()
        return result


@dataclass
class SeedResult:
    seed: int
    violations: list
    trace: list
    jobs: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [
            f"seed {self.seed}: {len(self.violations)} invariant(s) broken",
            *(f"  - {v}" for v in self.violations),
            f"  replay: SIM_SEED={self.seed} .venv/bin/python -m pytest tests/simulation -k replay",
            "  trace (last 40 steps):",
            *(f"    {line}" for line in self.trace[-40:]),
        ]
        return "\n".join(lines)


_spool_root: Path | None = None


def _spool_dir(seed: int) -> Path:
    """A seed's own finish spool: a path in one directory per process, created only when the
    seed spools a result (`spool.result_keep` makes it; a missing one reads as empty), removed
    after the seed."""
    global _spool_root
    if _spool_root is None:
        _spool_root = Path(tempfile.mkdtemp(prefix="sim-spool-"))
        atexit.register(shutil.rmtree, _spool_root, ignore_errors=True)
    return _spool_root / f"seed-{seed}"


def run_seed(seed: int, world: World, *, extra_patches=None) -> SeedResult:
    """Run one seed in a rolled-back savepoint and check the invariants. `extra_patches(patches,
    sim)` may wrap more functions (the tests' deliberately broken variants)."""
    from tests.simulation.invariants import check, snapshot

    rng = random.Random(seed)
    prices = dict(world.prices)
    patches = Patches()
    spool_dir = _spool_dir(seed)
    with_billing = drives_billing(seed)
    with (
        override_settings(
            **SIM_SETTINGS,
            **(BILLING_SETTINGS if with_billing else {}),
            GENERATIONS_SPOOL_DIR=spool_dir,
        ),
        time_machine.travel(BASE_TIME, tick=False) as traveller,
        seed_savepoint(patches),
    ):
        sim = Sim(seed=seed, world=world, rng=rng, traveller=traveller, p=_draw_mood(rng))
        if drives_http(seed):
            sim.http = HttpDriver(sim)
        sim.hooks_base = len(connection.run_on_commit)
        try:
            install(patches, sim)
            if extra_patches is not None:
                extra_patches(patches, sim)
            if with_billing:
                sim.billing = Billing(sim, patches)
            before = snapshot(world)
            orgs = world.orgs[: rng.randint(1, 2)]
            for _ in range(rng.choice([2, 2, 2, 3, 3, 4, 5, 6])):
                prompt = rng.choice(["a cat"] * 6 + ["[fail] a dog", "[reject] a fox"])
                sim.pending_submits.append(
                    (rng.choice(orgs), rng.choice(world.models).slug, prompt)
                )
            for _ in range(rng.randint(4, 14)):
                sim.step()
                sim.advance(0.001)
            while sim.pending_submits:
                sim.submit()
                sim.committed()
            sim.settle()
            violations = check(sim, before)
            if sim.billing is not None:
                violations += sim.billing.check()
        finally:
            patches.undo()
            world.prices = prices
            if spool_dir.exists():
                shutil.rmtree(spool_dir, ignore_errors=True)
        return SeedResult(seed=seed, violations=violations, trace=sim.trace, jobs=len(sim.jobs))
