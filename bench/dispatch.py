#!/usr/bin/env python
"""Dispatch benchmark: generations through the real API (gunicorn) and a Celery worker on Redis.

What runs: `gunicorn config.wsgi` (config.settings.production, sync workers) and
`celery -A config worker -Q gpu.a100 --pool prefork`, both started by this script in their own
process groups (and killed at the end, Ctrl-C included), on a PostgreSQL database and a Redis
database of their own. The simulated backend is instant (GENERATIONS_SIMULATED_SPEEDUP=0), so
what is measured is the platform's own cost: API, quotas, the credit hold, the job rows, the
broker, the worker's claim/run/capture transactions.

Fixtures (every run): a fresh organization (--orgs N: N of them, the clients spread over them)
on plan `bench-studio` (Studio's settings, but the API rate limit raised to 10^9/min and no
concurrent-jobs cap, so nothing refuses the load; the rate-limit counter still runs), a purchase
grant of 10^12 credits and an API key each, pool `a100` and model `bench-dispatch-sim` (1 credit,
backend simulated).

Phases:
  0. trace    in-process, one thread: SQL statements (CaptureQueriesContext), PostgreSQL round
              trips (libpq trace), Redis commands and ms per call for POST /api/v1/generations/
              and GET /api/v1/organization/ (Django test client: the whole middleware and DRF
              stack, no HTTP), and for the worker's side of a job (generation_run, no Celery).
  1. ratio    requests/s of POST /api/v1/generations/ and of GET /api/v1/organization/ (a
              trivial authenticated endpoint) at the same concurrency for the same duration,
              --rounds times in ABBA order. The Celery worker is not running yet, so no job
              execution competes for the 2 cores; the accepted jobs wait in Redis.
              Target: POST/GET >= 0.5.
  2. drain    the worker starts and runs the backlog of phase 0-1 alone: worker throughput.
  3. e2e      closed loop: --concurrency clients submit for --seconds, the worker running, then
              the backlog is awaited. Throughput = succeeded jobs / (first submit -> last
              finish); latency per job = finished_at - created_at from the database.
  4. light    open loop at --light-rate jobs/s for --light-seconds: latency without a backlog.
Then every job of the run must have succeeded and been captured exactly once, and
credits.selectors.ledger_drift() must be [] (exit status 1 otherwise).

CPU: for each measured window the script reads /proc for the gunicorn workers, the Celery
processes, the PostgreSQL backends of its database and itself (the load generator), and the
whole machine; CPU ms per request are much less noisy than requests/s on a shared machine.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django
from bench._proc import HOST, die_with_parent, free_port, pct, say

ROOT = _django.ROOT
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_dispatch"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
POOL = "a100"
MODEL = "bench-dispatch-sim"
PLAN = "bench-studio"
GRANT = Decimal("1000000000000")
POST_PATH = "/api/v1/generations/"
GET_PATH = "/api/v1/organization/"
TARGET_RATIO = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
ORIGINAL_ENV = dict(os.environ)


# --- Arguments --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/dispatch.py",
        description=__doc__,
        epilog=(
            "Examples:\n"
            "  .venv/bin/python bench/dispatch.py                 # ~2.5 min\n"
            "  .venv/bin/python bench/dispatch.py --quick         # ~1 min smoke run\n"
            "  .venv/bin/python bench/dispatch.py --concurrency 16 --gunicorn-workers 4\n\n"
            f"Database: {DEFAULT_DATABASE_URL} (created and migrated when missing).\n"
            f"Redis: {DEFAULT_REDIS_URL} (FLUSHED at the start: give it a database of its own).\n"
            "Exit status 1 when a job did not succeed, was not captured exactly once, or the\n"
            "ledger drifts; whether POST/GET >= 0.5 is printed as PASS/MISS."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="duration of each measured window: every ratio measurement and the e2e submission "
        "(default 10; 4 with --quick)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="untimed warm-up per ratio measurement (default 1; 0.5 with --quick)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    p.add_argument("--workers", type=int, default=2, help="Celery prefork processes (default 2)")
    p.add_argument(
        "--gunicorn-workers", type=int, default=2, help="gunicorn sync workers (default 2)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="ratio rounds, ABBA order (GET POST POST GET …); the table shows the median "
        "(default 2; 1 with --quick)",
    )
    p.add_argument(
        "--light-rate",
        type=float,
        default=5.0,
        help="jobs/s of the light-load phase (default 5; 0 skips it)",
    )
    p.add_argument(
        "--light-seconds",
        type=float,
        default=None,
        help="duration of the light-load phase (default 6; 3 with --quick)",
    )
    p.add_argument(
        "--trace-requests",
        type=int,
        default=None,
        help="in-process requests per endpoint for the trace (default 60; 20 quick)",
    )
    p.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="also cProfile N in-process POSTs and print the top functions",
    )
    p.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL database of the benchmark (default {DEFAULT_DATABASE_URL})",
    )
    p.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis database, flushed at the start (default {DEFAULT_REDIS_URL})",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="drop and recreate the database first (its name must contain 'bench')",
    )
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the gunicorn/celery logs (they are kept anyway on failure)",
    )
    p.add_argument(
        "--orgs",
        type=int,
        default=1,
        help="organizations the clients are spread over (default 1: every submission "
        "serialises on one credit account's row lock, as one busy customer's would)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="experiment: a Django setting for gunicorn and the worker (a generated settings "
        "module imports config.settings.production, then sets it; VALUE is a Python literal), "
        "e.g. --set CELERY_DB_REUSE_MAX=1000. Repeatable.",
    )
    p.add_argument("--quick", action="store_true", help="a short smoke run (~1 min)")
    args = p.parse_args(argv)
    q = args.quick
    args.seconds = args.seconds if args.seconds is not None else (4.0 if q else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if q else 1.0)
    args.rounds = args.rounds if args.rounds is not None else (1 if q else 2)
    args.light_seconds = args.light_seconds if args.light_seconds is not None else (3 if q else 6)
    args.trace_requests = args.trace_requests or (20 if q else 60)
    if min(args.concurrency, args.workers, args.gunicorn_workers, args.rounds, args.orgs) < 1:
        p.error("--concurrency, --workers, --gunicorn-workers, --rounds, --orgs must be >= 1")
    if args.seconds <= 0:
        p.error("--seconds must be > 0")
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier() or not name.isupper():
            p.error(f"--set takes NAME=VALUE with an upper-case setting name, not {item!r}")
        try:
            overrides[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[name] = value
    args.overrides = overrides
    return args


def ms(x: float) -> str:
    return "—" if x != x else f"{x * 1000:,.1f}"  # nan → —


# --- CPU accounting (/proc) -------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rfind(")") + 2 :].split()  # fields from 3 (state) on


def proc_cpu(pid: int) -> float | None:
    rest = _stat(pid)
    return None if rest is None else (int(rest[11]) + int(rest[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """pid and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            rest = _stat(int(entry))
            if rest is not None:
                parents.setdefault(int(rest[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnap:
    wall: float
    groups: dict[str, dict[int, float]]
    loadgen: float
    machine: tuple[float, float]
    pgstat: tuple[int, int, int]  # the database's sessions, commits, rollbacks (pg_stat_database)


class CpuMeter:
    """CPU seconds per group of processes between two snapshots. Processes that start inside
    the window count from 0; one that exits inside it loses its share. That is rare for gunicorn
    (persistent connections) but the rule for the Celery worker, whose PostgreSQL backends
    exit after every task (see pg_sessions): their CPU cannot be read from /proc."""

    def __init__(self, db_url: str, db_name: str):
        import psycopg

        self.db_name = db_name
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.roots: dict[str, int] = {}

    def track(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def snap(self) -> CpuSnap:
        groups: dict[str, dict[int, float]] = {}
        for name, root in self.roots.items():
            groups[name] = {p: c for p in descendants(root) if (c := proc_cpu(p)) is not None}
        pids = [
            r[0]
            for r in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [self.db_name],
            ).fetchall()
        ]
        groups["postgres"] = {p: c for p in pids if (c := proc_cpu(p)) is not None}
        row = self.conn.execute(
            "SELECT sessions, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s",
            [self.db_name],
        ).fetchone()
        return CpuSnap(time.perf_counter(), groups, time.process_time(), machine_cpu(), tuple(row))

    @staticmethod
    def delta(a: CpuSnap, b: CpuSnap) -> dict[str, float]:
        out = {}
        for name, after in b.groups.items():
            before = a.groups.get(name, {})
            out[name] = sum(max(0.0, c - before.get(p, 0.0)) for p, c in after.items())
        out["loadgen"] = b.loadgen - a.loadgen
        busy = b.machine[0] - a.machine[0]
        total = b.machine[1] - a.machine[1]
        out["machine_busy_frac"] = busy / total if total else float("nan")
        out["machine_busy_s"] = busy
        out["wall"] = b.wall - a.wall
        # Cumulative statistics reach pg_stat_database within ~1 s; the meter's own queries
        # and the script's polling add a few transactions per second.
        out["pg_sessions"] = b.pgstat[0] - a.pgstat[0]
        out["pg_xacts"] = (b.pgstat[1] + b.pgstat[2]) - (a.pgstat[1] + a.pgstat[2])
        return out

    def close(self) -> None:
        self.conn.close()


# --- Subprocesses -----------------------------------------------------------------------------


class Procs:
    """The servers this script starts, each in its own process group; stopped in reverse order
    whatever happens: SIGTERM to the leader, then SIGKILL to the whole group after a grace
    period. They also get SIGTERM if this script dies without cleaning up (PR_SET_PDEATHSIG)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.items: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, cmd: list[str], env: dict) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session → own process group (pgid == pid)
                preexec_fn=die_with_parent,
            )
        self.items.append((name, proc, log))
        return proc

    def log_of(self, name: str) -> Path:
        return next(log for n, _, log in self.items if n == name)

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self.log_of(name).read_text(errors="replace")
        except (OSError, StopIteration):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for _name, proc, _ in reversed(self.items):
            if proc.poll() is not None:
                continue
            try:  # the leader shuts its own workers down (gunicorn, celery: warm shutdown)
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 15
        for name, proc, _ in reversed(self.items):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The group may hold children that outlived their parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                say(f"  warning: {name} (pid {proc.pid}) did not exit")


def server_env(db_url: str, redis_url: str, overrides: dict, settings_dir: Path) -> dict:
    env = {k: v for k, v in ORIGINAL_ENV.items() if not k.startswith(("CELERY_", "GUNICORN"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECURE_SSL_REDIRECT="false",  # plain HTTP on 127.0.0.1: no redirect to https
        SECRET_KEY=f"bench-dispatch-{uuid.uuid4().hex}",
        ALLOWED_HOSTS=f"{HOST},localhost",
        DEBUG="false",
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        GENERATIONS_SIMULATED_SPEEDUP="0",
        GENERATIONS_FREE_TIER_MAX_QUEUED="1000000000",
        PYTHONUNBUFFERED="1",
    )
    if overrides:
        module = "bench_dispatch_settings"
        lines = ["from config.settings.production import *  # noqa: F403"]
        lines += [f"{name} = {value!r}" for name, value in overrides.items()]
        (settings_dir / f"{module}.py").write_text("\n".join(lines) + "\n")
        env["DJANGO_SETTINGS_MODULE"] = module
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(settings_dir), str(ROOT), env.get("PYTHONPATH", "")) if p
        )
    return env


def wait_http_ready(procs: Procs, proc, port: int, token: str, timeout: float = 120) -> float:
    """Until GET /api/v1/organization/ answers 200 (each worker loads Django on its first
    request, which takes seconds on a loaded machine)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}):\n{procs.tail('gunicorn')}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("GET", GET_PATH, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                return time.perf_counter() - t0
            raise SystemExit(f"GET {GET_PATH} answered {resp.status}: {body[:300]!r}")
        except (
            ConnectionRefusedError,
            ConnectionResetError,
            TimeoutError,
            http.client.RemoteDisconnected,
        ):
            time.sleep(0.2)
    raise SystemExit(f"gunicorn not ready after {timeout:.0f} s:\n{procs.tail('gunicorn')}")


def wait_worker_ready(procs: Procs, proc, timeout: float = 90) -> float:
    t0 = time.perf_counter()
    log = procs.log_of("celery")
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"celery exited ({proc.returncode}):\n{procs.tail('celery')}")
        if " ready." in log.read_text(errors="replace"):
            return time.perf_counter() - t0
        time.sleep(0.2)
    raise SystemExit(f"celery worker not ready after {timeout:.0f} s:\n{procs.tail('celery')}")


# --- Fixtures ---------------------------------------------------------------------------------


@dataclass
class Fixture:
    orgs: list  # --orgs organizations; the first one is used by the in-process trace
    accounts: list
    api_keys: list
    tokens: list[str]
    model: object

    @property
    def org(self):
        return self.orgs[0]

    @property
    def api_key(self):
        return self.api_keys[0]

    @property
    def token(self) -> str:
        return self.tokens[0]


def fixtures(run_id: str, n_orgs: int = 1) -> Fixture:
    import importlib
    from datetime import UTC, datetime

    from accounts.models import Plan
    from accounts.services import api_key_create, organization_create
    from credits.services import account_for, organization_grant
    from generations.models import AIModel, CreditRate
    from infra_costs.models import NodePool, PoolRate

    plans = importlib.import_module("accounts.migrations.0002_default_plans").PLANS
    studio = dict(next(p for p in plans if p["slug"] == "studio"))
    studio.update(
        slug=PLAN,
        name="Studio (bench: limits lifted)",
        api_rate_limit_per_min=1_000_000_000,  # the per-key counter still runs on every request
        max_concurrent_jobs=None,
        daily_generation_cap=None,
        is_public=False,
        sort_order=999,
    )
    plan, _ = Plan.objects.update_or_create(slug=PLAN, defaults=studio)

    pool, created = NodePool.objects.get_or_create(slug=POOL, defaults={"gpu_type": "A100"})
    if created:
        PoolRate.objects.create(
            pool=pool,
            hourly_rate_usd=Decimal("3.60"),
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
    model, created = AIModel.objects.update_or_create(
        slug=MODEL,
        defaults={
            "name": "Bench dispatch (simulated)",
            "pool": pool,
            "backend": "simulated",
            "backend_config": {"mean_s": 0.01},
            "is_active": True,
        },
    )
    if created or not model.rates.exists():
        CreditRate.objects.create(
            model=model,
            credits=Decimal(1),
            reason="bench price",
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )

    fx = Fixture([], [], [], [], model)
    for i in range(n_orgs):
        slug = f"bench-dispatch-{run_id}" + (f"-{i}" if n_orgs > 1 else "")
        org = organization_create(name=f"Bench dispatch {run_id} {i}", slug=slug, plan=plan)
        organization_grant(
            organization=org,
            amount=GRANT,
            source="purchase",
            reason="bench/dispatch.py",
            idempotency_key=f"bench-dispatch-{slug}",
        )
        key, token = api_key_create(organization=org, name="bench dispatch", actor=None)
        fx.orgs.append(org)
        fx.accounts.append(account_for(organization=org))
        fx.api_keys.append(key)
        fx.tokens.append(token)
    return fx


def vacuum(db_url: str) -> None:
    """autovacuum may be off (it is on this machine): every run adds thousands of rows to these
    tables, so refresh their statistics and visibility maps before measuring."""
    import psycopg
    from django.apps import apps

    labels = [
        "generations.Job", "generations.JobEvent", "credits.CreditHold", "credits.LedgerEntry",
        "credits.EntryAllocation", "credits.CreditAccount", "credits.CreditGrant",
        "accounts.APIKey", "accounts.Organization", "accounts.Subscription",
        "infra_costs.GpuRun", "infra_costs.Node",
    ]  # fmt: skip
    tables = []
    for label in labels:
        with contextlib.suppress(LookupError):
            tables.append(apps.get_model(label)._meta.db_table)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


# --- Phase 0: in-process trace ----------------------------------------------------------------


class RedisCounter:
    """Counts redis-py commands (replies read) and socket writes (≈ round trips) in-process."""

    def __init__(self):
        import redis.connection as rc

        self.rc = rc
        self.commands = 0
        self.writes = 0

    def __enter__(self):
        cls = self.rc.AbstractConnection
        self._send, self._read = cls.send_packed_command, cls.read_response
        counter = self

        def send(conn, command, check_health=True):
            counter.writes += 1
            return counter._send(conn, command, check_health)

        def read(conn, *a, **kw):
            counter.commands += 1
            return counter._read(conn, *a, **kw)

        cls.send_packed_command, cls.read_response = send, read
        return self

    def __exit__(self, *exc):
        cls = self.rc.AbstractConnection
        cls.send_packed_command, cls.read_response = self._send, self._read


@dataclass
class TraceResult:
    label: str
    statements: float  # Django-level SQL statements per request (CaptureQueriesContext)
    sql: list[str]  # one steady-state request's statements
    round_trips: float  # libpq round trips per request (BEGIN, COMMIT, SELECT 1 included)
    trips: list[tuple[str, float, float]]  # (sql, python-before ms, round-trip ms)
    db_ms: float
    python_ms: float
    redis_commands: float
    redis_writes: float
    wall_ms_p50: float


def trace_calls(label: str, fn: Callable[[], None], n: int) -> TraceResult:
    """Run `fn` (one request, or one job's run) n times for statement counts and wall time, then
    n times under libpq's protocol trace for round trips. `close_old_connections()` goes before
    each call, as gunicorn's request_started signal (and Celery's Django fixup before a task)
    does: with CONN_HEALTH_CHECKS that makes the first query of each call a `SELECT 1`."""
    from django.db import close_old_connections, connection
    from django.test.utils import CaptureQueriesContext

    from bench.ledger import parse_trace

    mark = "SELECT 'bench: next call'"
    for _ in range(5):  # warm: api_key_touch, prepared statements, imports
        close_old_connections()
        fn()
    counts, walls, sqls = [], [], []
    with RedisCounter() as rc:
        for _ in range(n):
            close_old_connections()
            with CaptureQueriesContext(connection) as cq:
                t0 = time.perf_counter()
                fn()
                walls.append(time.perf_counter() - t0)
            counts.append(len(cq.captured_queries))
            sqls = [q["sql"] for q in cq.captured_queries]
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+b") as f:
        pgconn.trace(f.fileno())
        try:
            for _ in range(n):
                with connection.cursor() as cur:
                    cur.execute(mark)
                close_old_connections()
                fn()
        finally:
            pgconn.untrace()
        f.seek(0)
        trips = parse_trace(f.read().decode("utf-8", "replace"))
    per: list[list] = []
    for rt in trips:
        if rt.sql == mark:
            per.append([])
        elif per:
            per[-1].append(rt)
    shape = statistics.mode(len(p) for p in per)
    same = [p for p in per if len(p) == shape]
    first = same[0]
    rows = [
        (
            first[i].sql,
            statistics.median(p[i].gap_before for p in same) * 1000,
            statistics.median(p[i].end - p[i].start for p in same) * 1000,
        )
        for i in range(shape)
    ]
    return TraceResult(
        label=label,
        statements=statistics.mean(counts),
        sql=sqls,
        round_trips=statistics.mean(len(p) for p in per),
        trips=rows,
        db_ms=statistics.median(sum(rt.end - rt.start for rt in p) for p in same) * 1000,
        python_ms=statistics.median(sum(rt.gap_before for rt in p[1:]) for p in same) * 1000,
        redis_commands=rc.commands / n,
        redis_writes=rc.writes / n,
        wall_ms_p50=statistics.median(walls) * 1000,
    )


def trace_phase(fx: Fixture, n: int) -> list[TraceResult]:
    """POST and GET through the Django test client (whole middleware + DRF stack, no HTTP),
    then the worker's side of a job: generations.services.generation_run on jobs submitted
    with the broker publish stubbed out (they never reach Redis)."""
    from unittest import mock

    from django.db import connection
    from django.test import Client

    from generations import services
    from generations.services import submission

    client = Client(HTTP_AUTHORIZATION=f"Bearer {fx.token}", HTTP_HOST=HOST)
    seeds = itertools.count(3_000_000_000)

    def post():
        r = client.post(
            POST_PATH,
            data=json.dumps({"model": MODEL, "params": {"prompt": "trace", "seed": next(seeds)}}),
            content_type="application/json",
        )
        assert r.status_code == 202, (r.status_code, r.content[:300])

    def get():
        r = client.get(GET_PATH)
        assert r.status_code == 200, (r.status_code, r.content[:300])

    out = [
        trace_calls(f"POST {POST_PATH}", post, n),
        trace_calls(f"GET {GET_PATH}", get, n),
    ]
    with mock.patch.object(submission, "enqueue", return_value=True):
        job_ids = [
            services.generation_submit(
                organization=fx.org,
                model_slug=MODEL,
                params={"prompt": "trace run", "seed": next(seeds)},
                api_key=fx.api_key,
            )[0].pk
            for _ in range(2 * n + 5)
        ]
    todo = iter(job_ids)

    def run():
        outcome = services.generation_run(job_id=next(todo), worker="bench-trace")
        assert outcome == "succeeded", outcome

    out.append(trace_calls("worker: generation_run (one job)", run, n))
    connection.close()
    return out


CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")


def print_trace(t: TraceResult) -> None:
    kinds = {"data": 0, "control": 0, "health": 0}
    for sql, _, _ in t.trips:
        s = sql.strip().upper()
        kinds["health" if s == "SELECT 1" else "control" if s.startswith(CONTROL) else "data"] += 1
    say(
        f"  {t.label}: {t.round_trips:.1f} PostgreSQL round trips = {kinds['data']} data "
        f"statements + {kinds['control']} transaction control (BEGIN/SAVEPOINT/RELEASE/COMMIT) "
        f"+ {kinds['health']} health check; {t.statements:.1f} in Django's query log "
        "(CaptureQueriesContext)"
    )
    say(
        f"    {t.redis_commands:.1f} Redis commands in {t.redis_writes:.1f} writes; "
        f"{t.wall_ms_p50:.2f} ms per call in-process (p50)"
    )
    say(
        f"    round trips (median ms: Python before it | round trip); "
        f"{t.db_ms:.2f} ms in PostgreSQL round trips per call"
    )
    from bench.ledger import describe

    for i, (sql, before, rt) in enumerate(t.trips, 1):
        say(f"     {i:>2}. {before:6.2f} | {rt:5.2f}  {describe(sql, 120)}")


def profile_posts(fx: Fixture, n: int) -> None:
    import cProfile
    import pstats

    from django.db import close_old_connections, connection
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {fx.token}", HTTP_HOST=HOST)
    body = lambda i: json.dumps({"model": MODEL, "params": {"prompt": "profile", "seed": i}})  # noqa: E731
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(n):
        close_old_connections()
        client.post(POST_PATH, data=body(3_500_000_000 + i), content_type="application/json")
    prof.disable()
    say(
        f"\ncProfile of {n} in-process POSTs ({n / (time.perf_counter() - t0):,.0f}/s under the "
        "profiler), top 30 by cumulative time:"
    )
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    say("top 20 by own time:")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(20)
    connection.close()


# --- Load generator ---------------------------------------------------------------------------


@dataclass
class LoadResult:
    label: str
    window_s: float
    ok: int  # expected-status responses completed inside the window
    ok_total: int  # …including warm-up
    errors: int
    first_error: str | None
    latencies: list[float] = field(repr=False, default_factory=list)
    ids: list[str] = field(repr=False, default_factory=list)
    first_send: float | None = None  # time.time() of the first request sent
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.window_s if self.window_s else 0.0


def _request(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def load(
    label: str,
    method: str,
    path: str,
    tokens: list[str],
    port: int,
    *,
    threads: int,
    warmup: float,
    seconds: float,
    meter: CpuMeter,
    collect_ids: bool = False,
    rate: float | None = None,
    seed_base: int = 0,
) -> LoadResult:
    """`threads` keep-alive clients (http.client; gunicorn's sync workers close after each
    response, and http.client reconnects) for warmup + seconds. Closed loop, or paced at `rate`
    requests/s in total (open loop) when given. Requests completed inside the window count."""
    expect = 202 if method == "POST" else 200
    base_headers = {"Accept": "application/json"}
    if method == "POST":
        base_headers["Content-Type"] = "application/json"
    stop = threading.Event()
    window = [float("inf"), float("inf")]
    lock = threading.Lock()
    res = LoadResult(label, seconds, 0, 0, 0, None)
    t_start = time.perf_counter()

    def client(i: int) -> None:
        headers = {**base_headers, "Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        seeds = itertools.count(seed_base + i * 10_000_000)
        lats, ids, ok, ok_total, errors = [], [], 0, 0, 0
        first_error = None
        next_at = t_start + (i / rate if rate else 0.0)
        interval = threads / rate if rate else 0.0
        first_send = None
        while not stop.is_set():
            if rate:
                delay = next_at - time.perf_counter()
                if delay > 0 and stop.wait(delay):
                    break
                next_at += interval
            body = None
            if method == "POST":
                body = json.dumps(
                    {"model": MODEL, "params": {"prompt": "bench dispatch", "seed": next(seeds)}}
                )
            if first_send is None:
                first_send = time.time()
            t0 = time.perf_counter()
            try:
                status, data = _request(conn, method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                conn.close()
                time.sleep(0.01)
                continue
            t1 = time.perf_counter()
            if status != expect:
                errors += 1
                first_error = first_error or f"HTTP {status}: {data[:200]!r}"
                continue
            ok_total += 1
            if collect_ids:
                ids.append(json.loads(data)["id"])
            if window[0] <= t1 <= window[1]:
                ok += 1
                lats.append(t1 - t0)
        conn.close()
        with lock:
            res.ok += ok
            res.ok_total += ok_total
            res.errors += errors
            res.latencies.extend(lats)
            res.ids.extend(ids)
            res.first_error = res.first_error or first_error
            if first_send is not None:
                res.first_send = min(res.first_send or first_send, first_send)

    pool = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(warmup)
    a = meter.snap()
    window[0] = a.wall
    window[1] = a.wall + seconds
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    b = meter.snap()
    window[1] = b.wall
    res.window_s = b.wall - a.wall
    stop.set()
    for t in pool:
        t.join(timeout=90)
    res.cpu = CpuMeter.delta(a, b)
    return res


# --- Job accounting from the database ---------------------------------------------------------


def job_counts(orgs: list) -> dict[str, int]:
    from django.db.models import Count

    from generations.models import Job

    rows = Job.objects.filter(organization__in=orgs).values("status").annotate(n=Count("pk"))
    return {r["status"]: r["n"] for r in rows}


def wait_terminal(orgs: list, *, timeout: float, label: str) -> tuple[bool, float]:
    """Poll until no job of `orgs` is queued or running. Returns (done, seconds waited)."""
    from django.db import connection

    t0 = time.perf_counter()
    last_print = 0.0
    while True:
        c = job_counts(orgs)
        pending = c.get("queued", 0) + c.get("running", 0)
        waited = time.perf_counter() - t0
        if pending == 0:
            connection.close()
            return True, waited
        if waited - last_print >= 3:
            say(
                f"    {label}: {pending:,} pending, {c.get('succeeded', 0):,} succeeded "
                f"({waited:.0f} s)"
            )
            last_print = waited
        if waited > timeout:
            connection.close()
            return False, waited
        time.sleep(0.25)


@dataclass
class JobTimes:
    n: int
    statuses: dict[str, int]
    total: list[float]  # finished - created
    queue: list[float]  # started - created
    run: list[float]  # finished - started
    first_created: float | None
    first_started: float | None
    last_finished: float | None


def job_times(ids: list[str] | None = None, *, orgs=None, finished_between=None) -> JobTimes:
    from generations.models import Job

    qs = Job.objects.all()
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    if orgs is not None:
        qs = qs.filter(organization__in=orgs)
    if finished_between is not None:
        qs = qs.filter(finished_at__gte=finished_between[0], finished_at__lte=finished_between[1])
    rows = list(qs.values_list("status", "created_at", "started_at", "finished_at"))
    statuses: dict[str, int] = {}
    total, queue, run = [], [], []
    firsts, starts, lasts = [], [], []
    for status, created, started, finished in rows:
        statuses[status] = statuses.get(status, 0) + 1
        firsts.append(created.timestamp())
        if started:
            starts.append(started.timestamp())
            queue.append((started - created).total_seconds())
        if finished:
            lasts.append(finished.timestamp())
            total.append((finished - created).total_seconds())
            if started:
                run.append((finished - started).total_seconds())
    return JobTimes(
        len(rows), statuses, total, queue, run,
        min(firsts, default=None), min(starts, default=None), max(lasts, default=None),
    )  # fmt: skip


# --- Reporting --------------------------------------------------------------------------------


def cpu_line(c: dict[str, float], per: int, label: str = "request") -> str:
    if not per:
        return "  CPU: —"
    parts = []
    churn = c.get("pg_sessions", 0) / per
    for name in ("gunicorn", "celery", "postgres"):
        if name not in c:
            continue
        if name == "postgres" and churn > 0.2:
            parts.append("postgres n/a (its backends exit before they can be read)")
        else:
            parts.append(f"{name} {c[name] / per * 1000:.2f}")
    parts.append(f"load generator {c['loadgen'] / per * 1000:.2f}")
    return (
        f"CPU ms per {label}: {', '.join(parts)}; machine {c['machine_busy_frac']:.0%} busy "
        f"({c['machine_busy_s'] / c['wall']:.2f} of {os.cpu_count()} cores)\n"
        f"  PostgreSQL per {label}: {c.get('pg_xacts', 0) / per:.1f} transactions, "
        f"{churn:.2f} new sessions (connections)"
    )


def report_ratio(rounds: list[dict[str, LoadResult]], args) -> tuple[float, bool]:
    say()
    say("=" * 96)
    say(
        f"Requests/s at {args.concurrency} clients, {args.gunicorn_workers} gunicorn workers "
        f"({args.seconds:g} s windows, {args.rounds} round(s), ABBA order; worker not running)"
    )
    say("=" * 96)
    head = (
        f"{'round':>5}  {'endpoint':<28} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'err':>4}  {'gunicorn':>9} {'postgres':>9} {'loadgen':>8} {'busy':>5}"
    )
    say(head)
    say(f"{'':>5}  {'':<28} {'':>8} {'':>8} {'':>8} {'':>8} {'':>4}  {'CPU ms/req':>29} {'':>5}")
    say("-" * len(head))
    for i, rnd in enumerate(rounds, 1):
        for key in ("GET", "POST"):
            r = rnd[key]
            c = r.cpu
            n = max(r.ok, 1)
            ep = f"{key} {GET_PATH if key == 'GET' else POST_PATH}"
            say(
                f"{i:>5}  {ep:<28} {r.rate:>8,.0f} {ms(pct(r.latencies, 0.5)):>8} "
                f"{ms(pct(r.latencies, 0.95)):>8} {ms(pct(r.latencies, 0.99)):>8} {r.errors:>4}  "
                f"{c['gunicorn'] / n * 1000:>9.2f} {c['postgres'] / n * 1000:>9.2f} "
                f"{c['loadgen'] / n * 1000:>8.2f} {c['machine_busy_frac']:>5.0%}"
            )
    get = statistics.median(r["GET"].rate for r in rounds)
    post = statistics.median(r["POST"].rate for r in rounds)
    ratio = post / get if get else 0.0
    per_round = [r["POST"].rate / r["GET"].rate if r["GET"].rate else 0.0 for r in rounds]

    def cpu_per(key, name):
        return statistics.median(r[key].cpu[name] / max(r[key].ok, 1) * 1000 for r in rounds)

    say("-" * len(head))
    say(f"median: GET {get:,.0f}/s, POST {post:,.0f}/s")
    for key in ("GET", "POST"):
        n = sum(r[key].ok for r in rounds) or 1
        say(
            f"PostgreSQL per {key}: "
            f"{sum(r[key].cpu['pg_xacts'] for r in rounds) / n:.2f} transactions, "
            f"{sum(r[key].cpu['pg_sessions'] for r in rounds) / n:.3f} new sessions"
        )
    for key in ("GET", "POST"):
        rate = statistics.median(r[key].rate for r in rounds)
        occupied = args.gunicorn_workers / rate * 1000 if rate else float("nan")
        cpu = cpu_per(key, "gunicorn")
        say(
            f"gunicorn worker time per {key} (workers / rate; clients > workers keep them busy): "
            f"{occupied:.1f} ms, of which {cpu:.1f} ms on CPU and {occupied - cpu:.1f} ms waiting "
            "(PostgreSQL, Redis, locks, the run queue)"
        )
    say(
        "server CPU per request (gunicorn + postgres): "
        f"GET {cpu_per('GET', 'gunicorn') + cpu_per('GET', 'postgres'):.2f} ms, "
        f"POST {cpu_per('POST', 'gunicorn') + cpu_per('POST', 'postgres'):.2f} ms"
    )
    get_cpu = cpu_per("GET", "gunicorn") + cpu_per("GET", "postgres")
    post_cpu = cpu_per("POST", "gunicorn") + cpu_per("POST", "postgres")
    say(
        f"CPU-cost ratio GET/POST = {get_cpu / post_cpu if post_cpu else 0:.2f}  (what POST/GET "
        "tends to when the server is CPU-bound; less noisy than req/s on a shared machine)"
    )
    ok = ratio >= TARGET_RATIO
    verdict = "PASS" if ok else f"MISS (needs {TARGET_RATIO * get:,.0f} POST/s)"
    say(
        f"POST/GET = {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in per_round)})  "
        f"target >= {TARGET_RATIO}  -> {verdict}"
    )
    return ratio, ok


def report_jobs(title: str, jt: JobTimes, extra: list[str]) -> None:
    say()
    say(title)
    say(f"  {'':<30} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}   (ms)")
    for label, xs in (
        ("finished - created (latency)", jt.total),
        ("  started - created (queued)", jt.queue),
        ("  finished - started (run)", jt.run),
    ):
        say(
            f"  {label:<30} {ms(pct(xs, 0.5)):>8} {ms(pct(xs, 0.95)):>8} {ms(pct(xs, 0.99)):>8} "
            f"{ms(max(xs, default=float('nan'))):>8}"
        )
    for line in extra:
        say("  " + line)


# --- Main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    run_id = time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    url, redis_url = args.database_url, args.redis_url
    db_name = _django.database_name(url)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with it ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    say(
        f"Dispatch benchmark {run_id} on {db_name} + {redis_url} "
        f"({os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f})"
    )
    say("[setup] database …")
    if _django.ensure_database(url, fresh=args.fresh):
        say(f"  created database {db_name}")
    # This process (fixtures, trace, accounting) runs config.settings.base on the same
    # database and broker as the servers.
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        GENERATIONS_SIMULATED_SPEEDUP="0",
        GENERATIONS_FREE_TIER_MAX_QUEUED="1000000000",
        ALLOWED_HOSTS=f"{HOST},localhost,testserver",
        CONN_MAX_AGE="600",
    )
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)
    _django.setup(url)
    say("  migrated")

    import redis
    from django.conf import settings
    from django.db import connection

    redis.Redis.from_url(redis_url).flushdb()
    say(f"  flushed {redis_url}")
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
        cur.execute("SHOW autovacuum")
        autovacuum = cur.fetchone()[0]
        cur.execute("SHOW synchronous_commit")
        sync_commit = cur.fetchone()[0]
    say(
        f"  PostgreSQL {pg_version} (autovacuum={autovacuum}, synchronous_commit={sync_commit}); "
        f"CONN_MAX_AGE of the servers: {ORIGINAL_ENV.get('CONN_MAX_AGE', '60 (default)')}"
    )
    fx = fixtures(run_id, args.orgs)
    vacuum(url)
    say(
        f"  {len(fx.orgs)} org(s) {fx.org.slug}… on plan {PLAN}, account #{fx.accounts[0].pk}… "
        f"(+{GRANT:,} credits each), one API key each, pool {POOL}, model {MODEL} "
        f"(1 credit, simulated, speedup {settings.GENERATIONS_SIMULATED_SPEEDUP:g})"
    )

    say(f"[0/4 trace] {args.trace_requests} in-process requests per endpoint …")
    traces = trace_phase(fx, args.trace_requests)
    if args.profile:
        profile_posts(fx, args.profile)
    trace_jobs = sum(job_counts(fx.orgs).values())
    connection.close()

    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-dispatch-{run_id}-"))
    procs = Procs(log_dir)
    meter = CpuMeter(url, db_name)
    env = server_env(url, redis_url, args.overrides, log_dir)
    if args.overrides:
        say(f"[setup] EXPERIMENT: servers run with {args.overrides}")
    failed = True
    try:
        port = free_port()
        say(f"[setup] gunicorn -w {args.gunicorn_workers} on {HOST}:{port} (logs in {log_dir}) …")
        g = procs.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"{HOST}:{port}",
             "-w", str(args.gunicorn_workers), "--error-logfile", "-",
             "--no-control-socket"],
            env,
        )  # fmt: skip
        meter.track("gunicorn", g.pid)
        say(f"  ready in {wait_http_ready(procs, g, port, fx.token):.1f} s")
        # Each sync worker loads Django on its first request: a burst of GETs reaches them all
        # before anything is measured.
        warm = load(
            "warm", "GET", GET_PATH, fx.tokens, port, threads=2 * args.gunicorn_workers,
            warmup=0.0, seconds=2.0, meter=meter,
        )  # fmt: skip
        say(f"  warm-up burst: {warm.ok_total} GETs, errors {warm.errors}")

        # --- 1: ratio -------------------------------------------------------------------
        say(
            f"[1/4 ratio] {args.rounds} round(s) × GET and POST × ({args.warmup:g} s warm-up + "
            f"{args.seconds:g} s) at {args.concurrency} clients …"
        )
        rounds = []
        seeds = itertools.count(0, 100_000_000)
        for rnd in range(args.rounds):
            order = ("GET", "POST") if rnd % 2 == 0 else ("POST", "GET")
            results = {}
            for key in order:
                r = load(
                    key, key, GET_PATH if key == "GET" else POST_PATH, fx.tokens, port,
                    threads=args.concurrency, warmup=args.warmup, seconds=args.seconds,
                    meter=meter, seed_base=next(seeds),
                )  # fmt: skip
                results[key] = r
                say(
                    f"  round {rnd + 1} {key:<4} {r.rate:8,.0f} req/s  p50 "
                    f"{ms(pct(r.latencies, 0.5))} ms  p95 {ms(pct(r.latencies, 0.95))} ms  "
                    f"errors {r.errors}  (machine {r.cpu['machine_busy_frac']:.0%} busy, "
                    f"load {os.getloadavg()[0]:.1f})"
                    + (f"  first error: {r.first_error}" if r.first_error else "")
                )
            rounds.append(results)
        ratio_accepted = sum(r["POST"].ok_total for r in rounds)

        # --- 2: drain -------------------------------------------------------------------
        from generations.models import Job

        backlog_ids = list(
            Job.objects.filter(organization__in=fx.orgs, status="queued").values_list(
                "pk", flat=True
            )
        )
        backlog = len(backlog_ids)
        say(
            f"[2/4 drain] starting celery -c {args.workers} on gpu.{POOL}; backlog {backlog:,} "
            "queued jobs …"
        )
        w = procs.start(
            "celery",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", f"gpu.{POOL}",
             "-c", str(args.workers), "--pool", "prefork", "-l", "INFO",
             "-n", f"bench-dispatch-{run_id}@%h", "--without-gossip", "--without-mingle"],
            env,
        )  # fmt: skip
        meter.track("celery", w.pid)
        say(f"  ready in {wait_worker_ready(procs, w):.1f} s")
        from django.utils import timezone

        d0_wall = timezone.now()
        d0 = meter.snap()
        done, _ = wait_terminal(fx.orgs, timeout=max(120.0, backlog / 5), label="drain")
        d1 = meter.snap()
        d1_wall = timezone.now()
        drain_cpu = CpuMeter.delta(d0, d1)
        drained = job_times(backlog_ids)
        in_window = job_times(orgs=fx.orgs, finished_between=(d0_wall, d1_wall)).n
        drain_span = (
            (drained.last_finished - drained.first_started)
            if drained.last_finished and drained.first_started else float("nan")
        )  # fmt: skip
        drain_rate = drained.n / drain_span if drain_span == drain_span and drain_span else 0.0
        say(
            f"  {drained.n:,} jobs terminal in {drain_span:.1f} s (first start → last finish): "
            f"{drain_rate:,.0f} jobs/s" + ("" if done else "  TIMED OUT")
        )

        # --- 3: e2e ---------------------------------------------------------------------
        say(
            f"[3/4 e2e] {args.concurrency} clients submit for {args.seconds:g} s with the worker "
            "running, then the backlog is awaited …"
        )
        e0 = meter.snap()
        e2e = load(
            "e2e", "POST", POST_PATH, fx.tokens, port, threads=args.concurrency, warmup=0.0,
            seconds=args.seconds, meter=meter, collect_ids=True, seed_base=2_000_000_000,
        )  # fmt: skip
        pending_at_end = job_counts(fx.orgs)
        say(
            f"  submitted {e2e.ok_total:,} ({e2e.ok_total / e2e.window_s:,.0f}/s, errors "
            f"{e2e.errors}); {pending_at_end.get('queued', 0):,} still queued at the end"
        )
        _, e2e_wait = wait_terminal(fx.orgs, timeout=max(120.0, len(e2e.ids) / 5), label="e2e")
        e1 = meter.snap()
        e2e_cpu = CpuMeter.delta(e0, e1)
        e2e_jobs = job_times(e2e.ids)

        # --- 4: light -------------------------------------------------------------------
        light = None
        if args.light_rate > 0:
            say(
                f"[4/4 light] {args.light_rate:g} jobs/s for {args.light_seconds:g} s (open loop) …"
            )
            light = load(
                "light", "POST", POST_PATH, fx.tokens, port,
                threads=min(args.concurrency, max(1, int(args.light_rate // 10) + 1)),
                warmup=0.0, seconds=args.light_seconds, meter=meter, collect_ids=True,
                rate=args.light_rate, seed_base=2_500_000_000,
            )  # fmt: skip
            wait_terminal(fx.orgs, timeout=60, label="light")
            light_jobs = job_times(light.ids)
        failed = False
    finally:
        say("[teardown] stopping gunicorn and celery …")
        procs.stop_all()
        meter.close()
        if failed or not args.keep_logs:
            if failed:
                say(f"  logs kept in {log_dir}")
                for name, _, _ in procs.items:
                    say(f"  --- {name} (last lines) ---\n{procs.tail(name, 15)}")
            else:
                shutil.rmtree(log_dir, ignore_errors=True)

    # --- Report -------------------------------------------------------------------------
    say()
    say("=" * 96)
    say(
        "Per call, in-process on one thread: requests through the Django test client (no HTTP, no "
        "gunicorn), a job's run through generations.services.generation_run (no Celery)"
    )
    say("=" * 96)
    for t in traces:
        print_trace(t)
    say(
        "  The first round trip of each call is CONN_HEALTH_CHECKS' `SELECT 1` (armed by "
        "close_old_connections, as gunicorn's request_started does). Django's query log has "
        "BEGIN/SAVEPOINT/COMMIT but neither that SELECT 1 nor the ledger's prepared statements "
        "(credits.ledger._core.execute runs them on a raw psycopg cursor)."
    )

    ratio, ratio_ok = report_ratio(rounds, args)

    say()
    say("=" * 96)
    say("Jobs")
    say("=" * 96)
    report_jobs(
        f"Drain: {drained.n:,} jobs (queued by the trace and the ratio phase) run by "
        f"{args.workers} worker processes alone (their latency is mostly the wait for the "
        "worker to start; the throughput is the point)",
        drained,
        [
            f"throughput {drain_rate:,.1f} jobs/s (first start → last finish, {drain_span:.1f} s)",
            cpu_line(drain_cpu, in_window, "job"),
        ],
    )
    e2e_span = (
        (e2e_jobs.last_finished - e2e.first_send)
        if e2e_jobs.last_finished and e2e.first_send else float("nan")
    )  # fmt: skip
    succeeded = e2e_jobs.statuses.get("succeeded", 0)
    e2e_rate = succeeded / e2e_span if e2e_span == e2e_span and e2e_span else 0.0
    report_jobs(
        f"End to end: {args.concurrency} clients for {args.seconds:g} s, worker running",
        e2e_jobs,
        [
            f"submitted {len(e2e.ids):,} (202) at {len(e2e.ids) / e2e.window_s:,.1f}/s, "
            f"errors {e2e.errors}; submit HTTP latency p50 {ms(pct(e2e.latencies, 0.5))} / "
            f"p95 {ms(pct(e2e.latencies, 0.95))} / p99 {ms(pct(e2e.latencies, 0.99))} ms",
            f"succeeded {succeeded:,} of {e2e_jobs.n:,}; throughput {e2e_rate:,.1f} jobs/s "
            f"(first submit → last finish, {e2e_span:.1f} s; the backlog took "
            f"{e2e_wait:.1f} s after submission stopped)",
            cpu_line(e2e_cpu, max(succeeded, 1), "job") + "  [submission + run]",
        ],
    )
    if light is not None:
        lsucc = light_jobs.statuses.get("succeeded", 0)
        report_jobs(
            f"Light load: {args.light_rate:g} jobs/s for {args.light_seconds:g} s (no backlog)",
            light_jobs,
            [
                f"submitted {len(light.ids)}, succeeded {lsucc}; submit HTTP latency p50 "
                f"{ms(pct(light.latencies, 0.5))} / p95 {ms(pct(light.latencies, 0.95))} ms",
            ],
        )

    # --- Checks -------------------------------------------------------------------------
    from django.db.models import Count

    from credits.models import CreditHold, EntryKind, LedgerEntry
    from credits.selectors import ledger_drift
    from generations.models import Job

    say()
    say("[check] every job succeeded, charged once; ledger invariants …")
    statuses = job_counts(fx.orgs)
    n_jobs = sum(statuses.values())
    accepted = (
        trace_jobs + ratio_accepted + len(e2e.ids)
        + (len(light.ids) if light else 0)
    )  # fmt: skip
    captures = LedgerEntry.objects.filter(account__in=fx.accounts, kind=EntryKind.CAPTURE)
    n_captures = captures.count()
    twice = list(
        captures.values("hold_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .values_list("hold_id", flat=True)[:5]
    )
    holds = dict(
        CreditHold.objects.filter(account__in=fx.accounts)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    uncharged = Job.objects.filter(organization__in=fx.orgs).exclude(credits_charged=1).count()
    drift = ledger_drift()
    say(
        f"  jobs: {n_jobs:,} {statuses}; accepted: {trace_jobs:,} in-process + "
        f"{accepted - trace_jobs:,} 202 responses over HTTP"
    )
    say(
        f"  captures: {n_captures:,}; holds captured twice: {twice or 'none'}; holds by status: "
        f"{holds}; jobs not charged exactly 1 credit: {uncharged}"
    )
    say(
        f"  credits.selectors.ledger_drift() = {drift[:5]!r}"
        + (f" … ({len(drift)} in all)" if len(drift) > 5 else "")
    )
    ok = (
        statuses.get("succeeded", 0) == n_jobs
        and n_jobs == accepted
        and n_captures == n_jobs
        and not twice
        and uncharged == 0
        and not drift
    )
    say()
    say(
        f"Done in {time.perf_counter() - started:.0f} s (load avg {os.getloadavg()[0]:.2f}). "
        f"POST/GET {ratio:.2f} -> {'PASS' if ratio_ok else 'MISS'}; end to end "
        f"{e2e_rate:,.1f} jobs/s, p50 {ms(pct(e2e_jobs.total, 0.5))} ms / p95 "
        f"{ms(pct(e2e_jobs.total, 0.95))} ms"
        + (f"; light-load p50 {ms(pct(light_jobs.total, 0.5))} ms" if light else "")
        + f"; checks {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("\ninterrupted")
        sys.exit(130)
