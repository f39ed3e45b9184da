#!/usr/bin/env python
"""Chaos run: generations under load through the real servers while a seeded fault schedule
kills and stops their parts; then the money must add up exactly.

What runs (all started here, each in its own process group, all stopped at the end, Ctrl-C
and SIGTERM included): a Redis of its own (`redis-server` on --redis-port, default 6392, no
persistence: a stopped Redis loses its queues, as an unpersisted production one would),
`gunicorn config.wsgi` (config.settings.production, --gunicorn-workers sync workers),
--workers `celery -A config worker` instances (--concurrency prefork processes each, every
queue: the project's default worker) and `celery -A config beat` (the project's schedule: the
reaper every 30 s), on a PostgreSQL database of its own (default gpucredits_bench_chaos).

Fixtures (every run): two organizations on plan `bench-chaos` (Studio's tier and priority,
limits lifted so only faults refuse anything), 10^9 credits and an API key each; pools `a100`
and `l4`, one simulated model each (`chaos-a100` 3 credits, `chaos-l4` 2 credits, log-normal
service time, mean --service-s, so a job takes ~0.2–1 s).

Load: an open loop at --rate submissions/s (Poisson arrivals from --seed), half to each pool,
half of them with an Idempotency-Key. A client with a key retries any 5xx, 429 or broken
connection with the same key (backoff, Retry-After honoured, 60 s at most); a client without
one retries only what says it was not taken (429, 503, connection refused) and gives up on
anything else (a 500, a timeout or a dropped connection: it can't know).

Faults (seeded, --faults all or a comma list): `celery` SIGKILLs a whole worker instance
(restarted at once under a new node name), `gunicorn` SIGKILLs one gunicorn worker (the master
forks another), `redis` SIGKILLs Redis for 10–20 s then starts it empty, `postgres`
terminates every backend of the database (pg_terminate_backend), `beat` restarts beat. Each
round of --seconds/120 places every chosen fault once, in a shuffled order, at a seeded time.

Then it settles (no job queued or running; the reaper runs in-process every 30 s meanwhile)
and prints: the money reconciliation (Σ charged = balance decrease = Σ capture entries, no
open hold, check_ledger, no idempotency duplicate, one GPU-run row per attempt), the status
codes clients and /healthz saw per fault window, the lost attempts (by a SIGKILLed worker, or
by a worker that lived on: completed GPU work whose result was not recorded) and `worker_lost`
failures, the reaper's republished messages against the messages really lost, and the p50/p95
wait per pool. Exit status 1 when the money isn't exact (or nothing settled).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django
from bench._proc import HOST, children, die_with_parent, free_port, pct, say

ROOT = _django.ROOT
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_chaos"
DEFAULT_REDIS_PORT = 6392
POST_PATH = "/api/v1/generations/"
PLAN = "bench-chaos"
GRANT = Decimal("1000000000")
MODELS = {"a100": ("chaos-a100", Decimal(3)), "l4": ("chaos-l4", Decimal(2))}
FAULTS = ("celery", "gunicorn", "redis", "postgres", "beat")
ORIGINAL_ENV = dict(os.environ)
REAP_EVERY_S = 30.0


# --- Arguments --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/chaos.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  .venv/bin/python bench/chaos.py --seed 1                # ~5 min\n"
            "  .venv/bin/python bench/chaos.py --seed 2 --seconds 360  # 3 rounds of faults\n"
            "  .venv/bin/python bench/chaos.py --seed 3 --seconds 20 --faults gunicorn,postgres\n"
        ),
    )
    p.add_argument("--seed", type=int, required=True, help="arrivals, clients and faults")
    p.add_argument("--seconds", type=float, default=120.0, help="load duration (default 120)")
    p.add_argument("--rate", type=float, default=5.0, help="submissions/s (default 5)")
    p.add_argument("--workers", type=int, default=2, help="Celery worker instances (default 2)")
    p.add_argument(
        "--concurrency", type=int, default=2, help="prefork processes per worker (default 2)"
    )
    p.add_argument("--gunicorn-workers", type=int, default=2, help="(default 2)")
    p.add_argument(
        "--faults",
        default="all",
        help=f"all, none, or a comma list of {','.join(FAULTS)} (default all)",
    )
    p.add_argument(
        "--service-s", type=float, default=0.5, help="mean simulated service time (default 0.5)"
    )
    p.add_argument(
        "--queues",
        default="",
        help="-Q for the workers (default: none, i.e. every queue, the project's default)",
    )
    p.add_argument(
        "--settle-timeout", type=float, default=420.0, help="max settle time (default 420)"
    )
    p.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    p.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the servers (e.g. GENERATIONS_LEASE_S=10)",
    )
    p.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = p.parse_args(argv)
    if args.faults == "all":
        args.fault_kinds = list(FAULTS)
    elif args.faults == "none":
        args.fault_kinds = []
    else:
        args.fault_kinds = [f.strip() for f in args.faults.split(",") if f.strip()]
        unknown = set(args.fault_kinds) - set(FAULTS)
        if unknown:
            p.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if min(args.workers, args.concurrency, args.gunicorn_workers) < 1 or args.rate <= 0:
        p.error("--workers, --concurrency, --gunicorn-workers, --rate must be positive")
    env = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            p.error(f"--set takes NAME=VALUE, not {item!r}")
        env[name] = value
    args.server_env = env
    return args


# --- The fault schedule -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load started
    kind: str
    duration: float  # how long the part stays down (Redis), else 0
    target: int  # which worker instance / gunicorn worker (index, modulo what exists)

    @property
    def window(self) -> tuple[float, float]:
        """When customers may see its effects: from the fault to 10 s after it ended."""
        return self.at, self.at + self.duration + 10.0


def fault_schedule(seed: int, seconds: float, kinds: list[str]) -> list[Fault]:
    """Every kind once per round of ~120 s, shuffled, each at a seeded time in its own slot
    between 10 % and 85 % of the run. Same seed, same arguments → same schedule."""
    if not kinds:
        return []
    rng = random.Random(f"chaos-faults-{seed}")
    rounds = max(1, round(seconds / 120))
    slots = rounds * len(kinds)
    start, end = 0.10 * seconds, 0.85 * seconds
    width = (end - start) / slots
    order = []
    for _ in range(rounds):
        ks = list(kinds)
        rng.shuffle(ks)
        order += ks
    out = []
    for i, kind in enumerate(order):
        at = start + i * width + rng.uniform(0, width / 2)
        duration = rng.uniform(10, 20) if kind == "redis" else 0.0
        out.append(Fault(round(at, 2), kind, round(duration, 2), rng.randrange(1000)))
    return out


def window_of(t: float, faults: list[Fault]) -> str:
    """The fault whose window holds time t (the latest started), or "none"."""
    label = "none"
    for f in faults:
        lo, hi = f.window
        if lo <= t < hi:
            label = f.kind
    return label


# --- Processes --------------------------------------------------------------------------------


class Procs:
    """Named servers, each incarnation in its own process group with its own log."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir = log_dir
        self.env = env
        self.live: dict[str, subprocess.Popen] = {}
        self.cmds: dict[str, list[str]] = {}
        self.generation: Counter = Counter()
        self.logs: list[Path] = []
        self.lock = threading.Lock()

    def start(self, name: str, cmd: list[str] | None = None) -> subprocess.Popen:
        with self.lock:
            cmd = cmd or self.cmds[name]
            self.cmds[name] = cmd
            gen = self.generation[name]
            self.generation[name] += 1
            log = self.log_dir / f"{name}.{gen}.log"
            argv = [a.replace("{gen}", str(gen)) for a in cmd]
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            self.live[name] = proc
            self.logs.append(log)
            return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        with self.lock:
            proc = self.live.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        if sig != signal.SIGKILL:  # children a graceful stop left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        with self.lock:
            names = list(self.live)[::-1]
        for name in names:
            with self.lock:
                proc = self.live.get(name)
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in names:
            with self.lock:
                proc = self.live.pop(name, None)
            if proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def text(self, prefix: str) -> str:
        parts = []
        for log in self.logs:
            if log.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    parts.append(log.read_text(errors="replace"))
        return "\n".join(parts)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - t0
        time.sleep(interval)
    raise SystemExit(f"{what} not ready after {timeout:.0f} s")


def redis_ping(port: int) -> bool:
    import redis

    return bool(redis.Redis(host=HOST, port=port, socket_timeout=1).ping())


def http_get(port: int, path: str, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# --- Fixtures ---------------------------------------------------------------------------------


@dataclass
class Fixture:
    orgs: list
    accounts: list
    tokens: list[str]
    balance0: Decimal = Decimal(0)


def fixtures(run_id: str, service_s: float) -> Fixture:
    import importlib
    from datetime import UTC, datetime

    from accounts.models import Plan
    from accounts.services import api_key_create, organization_create
    from credits.models import CreditAccount
    from credits.services import account_for, organization_grant
    from generations.models import AIModel, CreditRate
    from infra_costs.models import NodePool, PoolRate

    plans = importlib.import_module("accounts.migrations.0002_default_plans").PLANS
    studio = dict(next(p for p in plans if p["slug"] == "studio"))
    studio.update(
        slug=PLAN,
        name="Studio (chaos bench: limits lifted)",
        api_rate_limit_per_min=1_000_000_000,
        max_concurrent_jobs=None,
        daily_generation_cap=None,
        is_public=False,
        sort_order=999,
    )
    plan, _ = Plan.objects.update_or_create(slug=PLAN, defaults=studio)
    for pool_slug, (model_slug, price) in MODELS.items():
        pool, created = NodePool.objects.get_or_create(
            slug=pool_slug, defaults={"gpu_type": pool_slug.upper()}
        )
        if created:
            PoolRate.objects.create(
                pool=pool,
                hourly_rate_usd=Decimal("2.00"),
                effective_from=datetime(2020, 1, 1, tzinfo=UTC),
            )
        model, _ = AIModel.objects.update_or_create(
            slug=model_slug,
            defaults={
                "name": f"Chaos {pool_slug} (simulated)",
                "pool": pool,
                "backend": "simulated",
                "backend_config": {"mean_s": service_s, "sigma": 0.5},
                "is_active": True,
            },
        )
        if not model.rates.exists():
            CreditRate.objects.create(
                model=model,
                credits=price,
                reason="chaos bench price",
                effective_from=datetime(2020, 1, 1, tzinfo=UTC),
            )
    fx = Fixture([], [], [])
    for i in range(2):
        slug = f"bench-chaos-{run_id}-{i}"
        org = organization_create(name=f"Bench chaos {run_id} {i}", slug=slug, plan=plan)
        organization_grant(
            organization=org,
            amount=GRANT,
            source="purchase",
            reason="bench/chaos.py",
            idempotency_key=f"bench-chaos-{slug}",
        )
        _, token = api_key_create(organization=org, name="bench chaos", actor=None)
        fx.orgs.append(org)
        fx.accounts.append(account_for(organization=org))
        fx.tokens.append(token)
    fx.balance0 = sum(
        CreditAccount.objects.filter(pk__in=[a.pk for a in fx.accounts]).values_list(
            "balance", flat=True
        ),
        Decimal(0),
    )
    return fx


# --- Load -------------------------------------------------------------------------------------


@dataclass
class Submission:
    i: int
    pool: str
    seed: int
    key: str | None
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (t, status or error)
    job_ids: set = field(default_factory=set)
    gave_up: bool = False


class Load:
    def __init__(self, *, port: int, tokens: list[str], seed: int, t0: float):
        self.port = port
        self.tokens = tokens
        self.rng = random.Random(f"chaos-load-{seed}")
        self.seed = seed
        self.t0 = t0
        self.subs: list[Submission] = []
        self.abort = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def post(self, sub: Submission, token: str) -> tuple[str, str | None, float | None]:
        model = MODELS[sub.pool][0]
        body = json.dumps({"model": model, "params": {"prompt": "chaos run", "seed": sub.seed}})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if sub.key:
            headers["Idempotency-Key"] = sub.key
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request("POST", POST_PATH, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            job_id = None
            if resp.status in (200, 201, 202):
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    job_id = json.loads(data)["id"]
            ra = resp.getheader("Retry-After")
            retry_after = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
            return str(resp.status), job_id, retry_after
        except ConnectionRefusedError:
            return "refused", None, None
        except TimeoutError:
            return "timeout", None, None
        except (OSError, http.client.HTTPException):
            return "dropped", None, None
        finally:
            conn.close()

    def submit(self, sub: Submission, token: str, rng: random.Random) -> None:
        deadline = time.monotonic() + 60
        backoff = 0.5
        while True:
            status, job_id, retry_after = self.post(sub, token)
            sub.attempts.append((self.now(), status))  # when the answer (or error) came
            if job_id:
                sub.job_ids.add(job_id)
                return
            if status.startswith("4") and status not in ("429", "409"):
                sub.gave_up = True
                return
            safe = status in ("429", "503", "refused") or sub.key is not None
            if not safe or time.monotonic() + backoff > deadline or self.abort.is_set():
                sub.gave_up = True
                return
            wait = min(retry_after, 10.0) if retry_after is not None else backoff
            self.abort.wait(wait * rng.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 8.0)

    def run(self, seconds: float, rate: float, stop: threading.Event) -> None:
        """Submit until `seconds`, then wait for every client to be done (retries included).
        Interrupted (Ctrl-C), the clients stop retrying and nothing waits for them."""
        pool = ThreadPoolExecutor(max_workers=48, thread_name_prefix="client")
        try:
            self._arrivals(pool, seconds, rate, stop)
        except BaseException:
            self.abort.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _arrivals(self, pool, seconds: float, rate: float, stop: threading.Event) -> None:
        t = 0.0
        i = 0
        while not stop.is_set():
            t += self.rng.expovariate(rate)
            if t >= seconds:
                break
            sub = Submission(
                i=i,
                pool=self.rng.choice(("a100", "l4")),
                seed=self.seed * 1_000_000 + i,
                key=f"chaos-{self.seed}-{i}" if self.rng.random() < 0.5 else None,
            )
            token = self.tokens[self.rng.randrange(len(self.tokens))]
            client_rng = random.Random(f"{self.seed}-{i}")
            self.subs.append(sub)
            i += 1
            delay = t - self.now()
            if delay > 0:
                stop.wait(delay)
            pool.submit(self.submit, sub, token, client_rng)


class HealthPoller:
    """GET /healthz every second: which status it answered in each fault window."""

    def __init__(self, port: int, t0: float):
        self.port, self.t0 = port, t0
        self.seen: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
            try:  # "200 ok", "200 degraded", "503 error", …
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                body = resp.read()
                try:
                    state = json.loads(body).get("status", "")
                except (ValueError, AttributeError):
                    state = ""
                code = f"{resp.status} {state}".strip()
            except (OSError, http.client.HTTPException):
                code = "no answer"
            finally:
                conn.close()
            self.seen.append((time.monotonic() - self.t0, code))


# --- Faults -----------------------------------------------------------------------------------


@dataclass
class Chaos:
    procs: Procs
    args: argparse.Namespace
    db_url: str
    redis_cmd: list[str]
    workers: list[str]
    t0: float
    log: list[str] = field(default_factory=list)
    killed_workers: set = field(default_factory=set)  # node-name prefixes of SIGKILLed workers
    lost_in_redis: int = 0  # messages waiting in gpu.* lists when Redis was killed
    left_in_queues: int = 0  # messages still in gpu.* lists once every job settled
    done: threading.Event = field(default_factory=threading.Event)  # no fault in progress
    injected: list[Fault] = field(default_factory=list)  # the schedule as it really happened
    t0_wall: object = None  # the database's clock at t0

    def note(self, msg: str) -> None:
        line = f"  t={time.monotonic() - self.t0:6.1f}s {msg}"
        self.log.append(line)
        say(line)

    def inject(self, f: Fault) -> None:
        start = time.monotonic() - self.t0
        getattr(self, f"_{f.kind}")(f)
        end = time.monotonic() - self.t0
        # As injected: a Redis outage lasts until it answers again.
        self.injected.append(Fault(round(start, 2), f.kind, round(end - start, 2), f.target))

    def queued_messages(self) -> int:
        """Messages waiting in the gpu.* lists (every priority step) of the run's Redis."""
        import redis

        try:
            r = redis.Redis(host=HOST, port=self.args.redis_port, socket_timeout=2)
            return sum(r.llen(k) for k in r.keys("gpu.*") if r.type(k) in (b"list", "list"))
        except redis.RedisError:
            return 0

    def _celery(self, f: Fault) -> None:
        name = self.workers[f.target % len(self.workers)]
        gen = self.procs.generation[name] - 1
        self.killed_workers.add(f"chaos-{name}.g{gen}")
        self.procs.kill(name, signal.SIGKILL)
        self.procs.start(name)
        self.note(f"SIGKILL celery {name} (node chaos-{name}.g{gen}), restarted")

    def _gunicorn(self, f: Fault) -> None:
        master = self.procs.live.get("gunicorn")
        kids = children(master.pid) if master else []
        if not kids:
            self.note("gunicorn: no worker to kill")
            return
        pid = kids[f.target % len(kids)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.note(f"SIGKILL gunicorn worker {pid}")

    def _redis(self, f: Fault) -> None:
        waiting = self.queued_messages()
        self.lost_in_redis += waiting
        self.procs.kill("redis", signal.SIGKILL)
        self.note(f"SIGKILL redis ({waiting} job messages waiting die with it) for {f.duration}s")
        time.sleep(f.duration)
        self.procs.start("redis")
        wait_for(lambda: redis_ping(self.args.redis_port), 20, "redis")
        self.note("redis started again (empty)")

    def _postgres(self, f: Fault) -> None:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            n = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        self.note(f"pg_terminate_backend: {n} backends of the database")

    def _beat(self, f: Fault) -> None:
        self.procs.kill("beat", signal.SIGTERM)
        self.procs.start("beat")
        self.note("beat restarted")


def run_faults(
    chaos: Chaos, faults: list[Fault], stop: threading.Event, release: threading.Event
) -> None:
    """Inject the schedule, then stay alive until `release`: the servers this thread restarted
    get PR_SET_PDEATHSIG from it, which Linux sends when the *thread* that forked them exits."""
    for f in faults:
        delay = f.at - (time.monotonic() - chaos.t0)
        if delay > 0 and stop.wait(delay):
            break
        try:
            chaos.inject(f)
        except Exception as exc:  # the run goes on; the report says it
            chaos.note(f"fault {f.kind} failed to inject: {exc!r}")
    chaos.done.set()
    release.wait()


# --- Report -----------------------------------------------------------------------------------

REAP_LINE = re.compile(r"reap_jobs\[[^\]]+\] succeeded in [\d.]+s: (\{[^\n]*\})")
TASK_LINE = re.compile(r"run_generation\[[^\]]+\] succeeded in [\d.]+s: '([^'\n]*)'")


def sum_dicts(dicts) -> Counter:
    total: Counter = Counter()
    for d in dicts:
        for k, v in d.items():
            if isinstance(v, int | float):
                total[k] += v
    return total


def codes_table(rows: dict[str, Counter], title: str) -> None:
    codes = sorted({c for cnt in rows.values() for c in cnt})
    say(f"  {title}: " + ("no data" if not codes else ""))
    if not codes:
        return
    width = max(9, *(len(c) + 2 for c in codes))
    say("    " + f"{'window':<10}" + "".join(f"{c:>{width}}" for c in codes))
    for label in ("none", *FAULTS):
        if label in rows:
            say(
                "    "
                + f"{label:<10}"
                + "".join(f"{rows[label].get(c, 0):>{width}}" for c in codes)
            )


def report(
    *, fx: Fixture, load: Load, faults: list[Fault], chaos: Chaos, health: HealthPoller,
    reaps_inprocess: list[dict], settled: bool, settle_s: float,
) -> bool:  # fmt: skip
    from datetime import timedelta

    from django.core.management import call_command
    from django.db.models import Count, Max, Min, Sum

    from credits.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
    from generations.models import Job, JobEvent, JobStatus
    from infra_costs.models import GpuRun

    jobs = Job.objects.filter(organization__in=fx.orgs)
    statuses = dict(jobs.values_list("status").annotate(n=Count("pk")))
    failed_codes = dict(
        jobs.filter(status=JobStatus.FAILED).values_list("error_code").annotate(n=Count("pk"))
    )
    say()
    say("=" * 96)
    say("Jobs")
    say("=" * 96)
    n_jobs = sum(statuses.values())
    say(f"  {n_jobs:,} jobs: {statuses}; failed by code: {failed_codes or '{}'}")

    # --- Clients ---
    subs = load.subs
    accepted = [s for s in subs if s.job_ids]
    seeds_in_db = set(
        jobs.values_list("params__seed", flat=True)
    )  # each submission's seed is its own
    gave_up = [s for s in subs if not s.job_ids]
    lost = [s for s in gave_up if s.seed not in seeds_in_db]
    unknown = [s for s in gave_up if s.seed in seeds_in_db]
    by_key = Counter("key" if s.key else "no key" for s in lost)
    say(
        f"  clients: {len(subs):,} submissions ({sum(1 for s in subs if s.key):,} with an "
        f"Idempotency-Key), {sum(len(s.attempts) for s in subs):,} requests; accepted "
        f"{len(accepted):,}; gave up {len(gave_up):,}: {len(lost)} never accepted "
        f"({dict(by_key) or 'none'}), {len(unknown)} accepted though the client never heard"
    )
    # Each answer counts in the window of the fault it followed (by the time it came back).
    windows: dict[str, Counter] = defaultdict(Counter)
    for s in subs:
        for t, code in s.attempts:
            windows[window_of(t, chaos.injected)][code] += 1
    hwindows: dict[str, Counter] = defaultdict(Counter)
    for t, code in health.seen:
        hwindows[window_of(t, chaos.injected)][code] += 1
    codes_table(windows, "POST /api/v1/generations/ answers per fault window (window = fault "
                "→ 10 s after it ended)")  # fmt: skip
    codes_table(hwindows, "GET /healthz per fault window (one probe a second)")
    non_503_5xx = sum(
        n for cnt in windows.values() for c, n in cnt.items() if c.startswith("5") and c != "503"
    )
    say(f"  5xx other than 503 seen by clients: {non_503_5xx}")

    # --- Money ---
    say()
    say("=" * 96)
    say("Money")
    say("=" * 96)
    charged = jobs.aggregate(s=Sum("credits_charged"))["s"] or Decimal(0)
    accounts = CreditAccount.objects.filter(pk__in=[a.pk for a in fx.accounts])
    balance1 = sum(accounts.values_list("balance", flat=True), Decimal(0))
    held1 = sum(accounts.values_list("held", flat=True), Decimal(0))
    decrease = fx.balance0 - balance1
    captures = LedgerEntry.objects.filter(account__in=accounts, kind=EntryKind.CAPTURE)
    captured = captures.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    captured_delta = -(captures.aggregate(s=Sum("balance_delta"))["s"] or Decimal(0))
    open_holds = CreditHold.objects.filter(account__in=accounts, status=HoldStatus.HELD).count()
    twice = captures.values("hold_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    err = []
    try:
        import io

        out = io.StringIO()
        call_command("check_ledger", orgs=[o.slug for o in fx.orgs], stdout=out, stderr=out)
        ledger_ok = True
    except SystemExit:
        ledger_ok = False
        err = out.getvalue().splitlines()[-3:]
    dup_keys = (
        jobs.exclude(idempotency_key=None)
        .values("organization_id", "idempotency_key")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    client_dups = sum(1 for s in subs if len(s.job_ids) > 1)
    seed_dups = sum(
        1
        for n in Counter(jobs.filter(idempotency_key__isnull=False).values_list(
            "params__seed", flat=True)).values()
        if n > 1
    )  # fmt: skip
    attempts = {str(pk): a for pk, a in jobs.values_list("pk", "attempts")}
    expected_ids = {
        jid if k == 1 else f"{jid}#{k}" for jid, a in attempts.items() for k in range(1, a + 1)
    }
    run_ids = set(
        GpuRun.objects.filter(model_slug__in=[m for m, _ in MODELS.values()]).values_list(
            "external_id", flat=True
        )
    )
    ours = {r for r in run_ids if r.split("#")[0] in attempts}
    missing_runs = len(expected_ids - ours)
    extra_runs = len(ours - expected_ids)
    say(f"  Σ charged (jobs)          {charged:>16,}")
    say(f"  balance decrease          {decrease:>16,}")
    say(f"  Σ capture entries         {captured:>16,}  (balance delta {captured_delta:,})")
    say(
        f"  open holds {open_holds}, held {held1:,}; holds captured twice {twice}; "
        f"check_ledger {'clean' if ledger_ok else 'DRIFT ' + ' / '.join(err)}"
    )
    say(
        f"  idempotency: keys with >1 job {dup_keys}, clients given 2 job ids {client_dups}, "
        f"keyed seeds with >1 job {seed_dups}"
    )
    say(
        f"  GPU-run rows: {len(ours):,} for {sum(attempts.values()):,} attempts; "
        f"missing {missing_runs}, extra {extra_runs}"
    )
    db_ids = {str(pk) for pk in jobs.values_list("pk", flat=True)}
    told = {jid for s in subs for jid in s.job_ids}
    unknown_ids = len(told - db_ids)
    if unknown_ids or (subs and not n_jobs):
        say(f"  NOT EXACT: {unknown_ids} job ids given to clients are not in the database, "
            f"{n_jobs} jobs for {len(subs)} submissions")  # fmt: skip
    money_ok = (
        bool(n_jobs or not subs)
        and unknown_ids == 0
        and settled
        and charged == decrease == captured == captured_delta
        and open_holds == 0
        and held1 == 0
        and twice == 0
        and ledger_ok
        and dup_keys == 0
        and client_dups == 0
        and seed_dups == 0
        and missing_runs == 0
        and extra_runs == 0
    )

    # --- Lost work ---
    say()
    say("=" * 96)
    say("Lost attempts, worker_lost, the reaper")
    say("=" * 96)
    running_by_job: dict[str, list[str]] = defaultdict(list)
    lost_attempts: list[tuple[str, int]] = []
    lost_re = re.compile(r"worker lost during attempt (\d+)")
    for jid, status, worker, message in (
        JobEvent.objects.filter(job__in=jobs)
        .order_by("at", "pk")
        .values_list("job_id", "status", "worker", "message")
    ):
        jid = str(jid)
        if status == JobStatus.RUNNING:
            running_by_job[jid].append(worker)
        elif status == JobStatus.QUEUED and (m := lost_re.search(message or "")):
            lost_attempts.append((jid, int(m.group(1))))
    for jid, a in jobs.filter(error_code="worker_lost").values_list("pk", "attempts"):
        lost_attempts.append((str(jid), a))
    by_kill = by_live = 0
    for jid, k in lost_attempts:
        ws = running_by_job.get(jid, [])
        worker = ws[k - 1] if 0 < k <= len(ws) else ""
        if worker.split("@")[0] in chaos.killed_workers:
            by_kill += 1
        else:
            by_live += 1
    wl_jobs = failed_codes.get("worker_lost", 0)
    # Workers that never claimed again once Redis was back (alive, not SIGKILLed after it).
    last_claim: dict[str, object] = {}
    for worker, at in (
        JobEvent.objects.filter(job__in=jobs, status=JobStatus.RUNNING)
        .values_list("worker")
        .annotate(last=Max("at"))
    ):
        last_claim[worker.split("@")[0]] = at
    for f in chaos.injected:
        if f.kind != "redis":
            continue
        back = chaos.t0_wall + timedelta(seconds=f.at + f.duration)
        idle = sorted(
            w for w, at in last_claim.items() if at < back and w not in chaos.killed_workers
        )
        say(
            f"  workers that claimed nothing after Redis came back at t={f.at + f.duration:.0f}s: "
            f"{', '.join(idle) or 'none'} (of {len(last_claim)} that claimed jobs)"
        )
    say(
        f"  lost attempts: {len(lost_attempts)} — {by_kill} on a SIGKILLed worker, {by_live} on "
        f"a worker that lived on (GPU work done, result not recorded); jobs failed worker_lost: "
        f"{wl_jobs}"
    )
    celery_text = chaos.procs.text("w")
    reaps_logged = [ast.literal_eval(m) for m in REAP_LINE.findall(celery_text)]
    reaps = sum_dicts(reaps_logged + reaps_inprocess)
    republished = sum(v for k, v in reaps.items() if k in ("requeued", "retried_lost"))
    republished = reaps.get("republished", republished)
    gun_text = chaos.procs.text("gunicorn")
    failed_publish = gun_text.count("Could not publish job")
    really_lost = chaos.lost_in_redis + failed_publish + by_kill
    deliveries = Counter(TASK_LINE.findall(celery_text))
    say(
        f"  reaper: {len(reaps_logged)} beat runs + {len(reaps_inprocess)} in-process while "
        f"settling; totals {dict(reaps) or '{}'}"
    )
    say(
        f"  messages really lost ≈ {really_lost} = {chaos.lost_in_redis} waiting in Redis when "
        f"it died + {failed_publish} publishes refused at submission + {by_kill} held by a "
        f"SIGKILLed worker"
    )
    ratio = republished / really_lost if really_lost else float("nan")
    say(
        f"  republished {republished} → ratio {ratio:.2f}"
        + ("" if really_lost else " (nothing lost)")
    )
    say(
        f"  run_generation deliveries by outcome: {dict(deliveries.most_common())}; "
        f"{sum(n for o, n in deliveries.items() if o not in ('succeeded', 'failed'))} did "
        f"nothing (duplicates); {chaos.left_in_queues} messages left in the queues after settling"
    )
    if hasattr(Job, "publish_count"):
        published = jobs.aggregate(s=Sum("publish_count"))["s"] or 0
        say(
            f"  publishes recorded on the jobs: {published:,} for {n_jobs:,} jobs "
            f"({published - n_jobs:+,} beyond one each)"
        )

    # --- Waits ---
    say()
    say("=" * 96)
    say("Wait per pool (created → first claim), seconds")
    say("=" * 96)
    first_claim = dict(
        JobEvent.objects.filter(job__in=jobs, status=JobStatus.RUNNING)
        .values("job_id")
        .annotate(at=Min("at"))
        .values_list("job_id", "at")
    )
    waits: dict[str, list[float]] = defaultdict(list)
    for jid, pool, created in jobs.values_list("pk", "model__pool__slug", "created_at"):
        if jid in first_claim:
            waits[pool].append((first_claim[jid] - created).total_seconds())
    p50s = {}
    for pool in sorted(waits):
        xs = waits[pool]
        p50s[pool] = pct(xs, 0.5)
        say(
            f"  {pool:<6} {len(xs):>6,} jobs  p50 {pct(xs, 0.5):7.2f}  p95 {pct(xs, 0.95):7.2f}  "
            f"max {max(xs):7.2f}"
        )
    if len(p50s) > 1 and min(p50s.values()) > 0:
        say(f"  p50 max/min across pools: {max(p50s.values()) / min(p50s.values()):.2f}")
    spread = (
        max(p50s.values()) / min(p50s.values())
        if len(p50s) > 1 and min(p50s.values()) > 0
        else float("nan")
    )
    say()
    say("Issue 13's targets (reported; only the money decides the exit status):")
    for label, met in (
        ("money exact", money_ok),
        ("0 non-503 5xx", non_503_5xx == 0),
        ("0 worker_lost for completed work", by_live == 0),
        ("republished <= 1.2 x really lost", republished <= 1.2 * really_lost),
        ("no pool's p50 wait > 2x another's", spread <= 2),
    ):
        say(f"  {'PASS' if met else 'MISS'}  {label}")
    say()
    say(
        f"Settled: {'yes' if settled else 'NO'} ({settle_s:.0f} s after the load). "
        f"Money {'EXACT' if money_ok else 'NOT EXACT'}."
    )
    say(
        f"summary: submissions {len(subs)} jobs {n_jobs} succeeded "
        f"{statuses.get('succeeded', 0)} non503_5xx {non_503_5xx} lost_no_key "
        f"{by_key.get('no key', 0)} worker_lost_completed {by_live} worker_lost_jobs {wl_jobs} "
        f"republished {republished} really_lost {really_lost} money_exact {int(money_ok)}"
    )
    return money_ok


# --- Main -------------------------------------------------------------------------------------


def server_env(
    db_url: str, redis_url: str, extra: dict, spool_dir: Path, service_speedup: str = "1"
) -> dict:
    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith(("CELERY_", "GUNICORN"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=f"bench-chaos-{uuid.uuid4().hex}",
        ALLOWED_HOSTS=f"{HOST},localhost",
        DEBUG="false",
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        GENERATIONS_SIMULATED_SPEEDUP=service_speedup,
        # Results a worker could not record are spooled here (not in the project's var/).
        GENERATIONS_SPOOL_DIR=str(spool_dir),
        PYTHONUNBUFFERED="1",
        # Plain HTTP on the loopback, as behind the TLS-terminating proxy (no HTTPS redirect).
        SECURE_SSL_REDIRECT="false",
        # The report reads the servers' logs line by line (production's default is JSON).
        LOG_FORMAT="text",
    )
    env.update(extra)
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    url = args.database_url
    redis_url = f"redis://{HOST}:{args.redis_port}/0"
    db_name = _django.database_name(url)
    faults = fault_schedule(args.seed, args.seconds, args.fault_kinds)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    say(
        f"Chaos run {run_id}, seed {args.seed}: {args.seconds:g} s at {args.rate:g}/s, "
        f"{args.workers} worker(s) × {args.concurrency}, gunicorn -w {args.gunicorn_workers}, "
        f"on {db_name} + Redis :{args.redis_port} ({os.cpu_count()} CPUs, load avg "
        f"{os.getloadavg()[0]:.2f})"
    )
    say("  faults: " + (", ".join(f"{f.kind}@{f.at:g}s" + (f"+{f.duration:g}s" if f.duration
                                  else "") for f in faults) or "none"))  # fmt: skip
    if not args.fresh and leftovers(url):
        say("  jobs of an earlier (interrupted) run are still queued or running: recreating")
        args.fresh = True
    if _django.ensure_database(url, fresh=args.fresh):
        say(f"  created database {db_name}")
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-chaos-{run_id}-"))
    env = server_env(url, redis_url, args.server_env, log_dir / "spool")
    procs = Procs(log_dir, env)
    redis_cmd = [
        shutil.which("redis-server") or "redis-server", "--port", str(args.redis_port),
        "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(log_dir),
    ]  # fmt: skip
    ok = False
    release = threading.Event()
    try:
        procs.start("redis", redis_cmd)
        wait_for(lambda: redis_ping(args.redis_port), 20, "redis")
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings.base",
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            ALLOWED_HOSTS=f"{HOST},localhost,testserver",
            GENERATIONS_SPOOL_DIR=env["GENERATIONS_SPOOL_DIR"],
        )
        for k, v in args.server_env.items():
            os.environ[k] = v
        os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)
        _django.setup(url)
        from django.db import close_old_connections, connection

        from generations.models import Job, JobStatus
        from generations.services import jobs_reap

        fx = fixtures(run_id, args.service_s)
        connection.close()
        say(f"  orgs {', '.join(o.slug for o in fx.orgs)}; logs in {log_dir}")

        port = free_port()
        procs.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"{HOST}:{port}",
             "-w", str(args.gunicorn_workers), "--error-logfile", "-", "--no-control-socket"],
        )  # fmt: skip
        wait_for(lambda: http_get(port, "/healthz") < 500, 120, "gunicorn")
        workers = [f"w{i + 1}" for i in range(args.workers)]
        for name in workers:
            cmd = [sys.executable, "-m", "celery", "-A", "config", "worker",
                   "-c", str(args.concurrency), "--pool", "prefork", "-l", "INFO",
                   "-n", f"chaos-{name}.g{{gen}}@%h", "--without-gossip",
                   "--without-mingle"]  # fmt: skip
            if args.queues:
                cmd += ["-Q", args.queues]
            procs.start(name, cmd)
        procs.start(
            "beat",
            [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
             "--pidfile", str(log_dir / "beat.pid{gen}")],
        )  # fmt: skip
        for name in workers:
            wait_for(lambda n=name: " ready." in procs.text(n), 90, f"celery {name}")
        say(f"  servers up: gunicorn :{port}, {len(workers)} worker(s), beat")

        t0 = time.monotonic()
        stop = threading.Event()
        chaos = Chaos(procs, args, url, redis_cmd, workers, t0)
        from django.utils import timezone

        chaos.t0_wall = timezone.now()
        load = Load(port=port, tokens=fx.tokens, seed=args.seed, t0=t0)
        health = HealthPoller(port, t0)
        health.thread.start()
        fault_thread = threading.Thread(
            target=run_faults, args=(chaos, faults, stop, release), daemon=True
        )
        fault_thread.start()
        say(f"[load] {args.seconds:g} s …")
        try:
            load.run(args.seconds, args.rate, stop)
        finally:
            stop.set()
            chaos.done.wait()  # a fault in progress ends (Redis back) before settling
        say(f"  {len(load.subs):,} submissions sent; settling …")

        # --- Settle ---
        reaps: list[dict] = []
        s0 = time.monotonic()
        last_reap = 0.0
        settled = False
        while time.monotonic() - s0 < args.settle_timeout:
            try:
                close_old_connections()
                pending = Job.objects.filter(
                    organization__in=fx.orgs, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
                ).count()
                if pending == 0:
                    settled = True
                    break
                if time.monotonic() - last_reap >= REAP_EVERY_S:
                    reaps.append(jobs_reap())
                    last_reap = time.monotonic()
            except Exception as exc:  # a connection terminated by the last fault, etc.
                say(f"  settle: {exc.__class__.__name__}: {str(exc)[:120]}")
                connection.close()
                pending = -1
            time.sleep(2)
        settle_s = time.monotonic() - s0
        health.stop.set()
        with contextlib.suppress(Exception):
            reaps.append(jobs_reap())
        say(f"  settled in {settle_s:.0f} s" if settled else "  NOT settled")
        time.sleep(3)  # duplicates already on their way to a worker
        chaos.left_in_queues = chaos.queued_messages()
        procs.stop_all()
        release.set()
        connection.close()
        ok = report(
            fx=fx, load=load, faults=faults, chaos=chaos, health=health,
            reaps_inprocess=reaps, settled=settled, settle_s=settle_s,
        )  # fmt: skip
        say("fault log:")
        for line in chaos.log:
            say(line)
    finally:
        procs.stop_all()
        release.set()
        if ok and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            say(f"  logs kept in {log_dir}")
    return 0 if ok else 1


def leftovers(url: str) -> bool:
    """Whether the database holds jobs an earlier run left queued or running: the reaper would
    work on them during this run and blur its figures."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return bool(
                conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM generations_job "
                    "WHERE status IN ('queued', 'running'))"
                ).fetchone()[0]
            )
    except psycopg.Error:  # no database or no table yet
        return False


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("\ninterrupted")
        sys.exit(130)
