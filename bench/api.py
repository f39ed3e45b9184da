#!/usr/bin/env python
"""API benchmark: requests/s of the customer API against the framework's floor (`/healthz`).

What runs: `gunicorn config.wsgi` (config.settings.production with SECURE_SSL_REDIRECT off,
2 workers × 4 threads by default), started by this script on a PostgreSQL database and a Redis
database of its own (created, migrated and seeded here), and Debian's `wrk`
(`apt-get install -y wrk`) as the load generator: `wrk -t2 -c8 -d8s --latency` per endpoint,
one after the other in one run:

  GET  /healthz                    no auth; pings PostgreSQL and Redis (the floor, measured
                                   first and again last: the ratio uses their mean)
  GET  /api/v1/models/             API key
  GET  /api/v1/balance/            API key
  GET  /api/v1/generations/        API key (first page of the jobs the run submitted)
  POST /api/v1/generations/        API key, unique seeds (a wrk Lua script): every request is
                                   a new job with its quotas, hold, job row, status log, enqueue
  POST /api/v1/generations/<id>/cancel/   each request cancels another queued job of the POST
                                   phase (the first organization's; a Lua script walks their ids)

Each prints requests/s, p50/p99 latency and the ratio to /healthz, PASS/MISS against the
targets of docs/performance.md ("API"): authenticated GETs >= 0.5 × healthz, POST generations
>= 0.25 × healthz. No Celery worker runs while wrk does (jobs wait in Redis), so nothing but
the web requests competes for the CPUs.

Then submit → succeeded: the leftover queued jobs are cancelled in-process, one Celery worker
process starts (instant simulated backend) and first takes every message already in gpu.a100
(the cancelled jobs' messages stay in Redis; each costs the worker one task, 'already
cancelled'), and only then are jobs submitted at --light-rate/s (open loop, no backlog);
latency = finished_at - created_at from the database, p50/p99, PASS/MISS against the overhead
target p50 <= 20 ms, split at the job's published_at (the web's part: the rest of the
request, commit, publish; the worker's: Redis, its take, the task's start) and started_at
(then the claim, run and capture). Every such job must succeed and
credits.selectors.ledger_drift() must be [] (exit status 1 otherwise).
--latency-only skips the wrk phases (~30 s instead of ~1.5 min).

Fixtures (bench/dispatch.py's): an organization on plan `bench-studio` (no rate limit that
refuses, no caps; the per-key counter still runs), 10^12 credits, one API key, pool `a100`,
model `bench-dispatch-sim` (1 credit, simulated backend). `--orgs N` spreads the POSTs over N
such organizations (their keys in turn): one organization's submissions wait for each other on
its credit account's row lock, N of them do not — the difference shows what that lock costs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django
from bench._proc import HOST, free_port, pct, say
from bench.dispatch import (
    MODEL,
    CpuMeter,
    Procs,
    fixtures,
    job_times,
    load,
    ms,
    server_env,
    vacuum,
    wait_http_ready,
    wait_terminal,
    wait_worker_ready,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_api"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
POOL = "a100"
TARGET_GET = 0.5
TARGET_POST = 0.25
TARGET_OVERHEAD_P50_S = 0.020
GENERATIONS = "/api/v1/generations/"
GETS = ("/api/v1/models/", "/api/v1/balance/", GENERATIONS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/api.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Example: .venv/bin/python bench/api.py          # ~1.5 min\n"
            f"Database: {DEFAULT_DATABASE_URL}; Redis: {DEFAULT_REDIS_URL} (FLUSHED first)."
        ),
    )
    p.add_argument("--seconds", type=int, default=8, help="wrk -d per endpoint (default 8)")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    p.add_argument("--connections", type=int, default=8, help="wrk -c (default 8)")
    p.add_argument("--gunicorn-workers", type=int, default=2, help="default 2")
    p.add_argument("--gunicorn-threads", type=int, default=4, help="default 4 (gthread)")
    p.add_argument("--light-rate", type=float, default=5.0, help="jobs/s of submit→succeeded")
    p.add_argument("--light-seconds", type=float, default=8.0, help="default 8")
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the wrk phases: only submit → succeeded (to iterate on the worker's latency)",
    )
    p.add_argument(
        "--orgs",
        type=int,
        default=1,
        help="organizations the POSTs are spread over (default 1: every submission waits for "
        "the one credit account's row lock, as one busy customer's would)",
    )
    p.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    p.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    p.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    p.add_argument("--keep-logs", action="store_true")
    return p.parse_args(argv)


# --- wrk --------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    label: str
    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    bad: int  # non-2xx/3xx responses + socket errors
    cpu_ms: float = float("nan")  # gunicorn + PostgreSQL CPU per request (less noisy than req/s)


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(label: str, out: str) -> WrkResult:
    def find(pattern: str, default: str = "0") -> str:
        m = re.search(pattern, out)
        return m.group(1) if m else default

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(find(r"Non-2xx or 3xx responses: (\d+)"))
    bad += sum(int(x) for x in errors.groups()) if errors else 0
    return WrkResult(
        label=label,
        rps=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50=_seconds(find(r"\n\s+50%\s+(\S+)", "nan")),
        p99=_seconds(find(r"\n\s+99%\s+(\S+)", "nan")),
        requests=int(find(r"(\d+) requests in")),
        bad=bad,
    )


def run_wrk(
    label: str, url: str, args, *, token: str | None, script: Path | None, meter: CpuMeter
) -> WrkResult:
    cmd = [
        "wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.seconds}s",
        "--latency", "--timeout", "10s",
    ]  # fmt: skip
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", str(script)]
    before = meter.snap()
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=False)
    cpu = CpuMeter.delta(before, meter.snap())
    if out.returncode != 0:
        raise SystemExit(f"wrk failed on {label}:\n{out.stdout}\n{out.stderr}")
    result = parse_wrk(label, out.stdout)
    if result.requests:
        result.cpu_ms = (cpu["gunicorn"] + cpu["postgres"]) / result.requests * 1000
    say(
        f"  {label:<34} {result.rps:8,.0f} req/s  p50 {ms(result.p50)} ms  p99 {ms(result.p99)} "
        f"ms  ({result.requests:,} requests, {result.bad} not 2xx, load "
        f"{os.getloadavg()[0]:.1f})"
    )
    return result


_THREAD_IDS = """
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end
"""


def post_script(path: Path, *, prompt: str, tokens: list[str]) -> Path:
    """Each request a new job: seed = thread × 10^8 + its own counter (unique in the run);
    with several organizations (--orgs) the requests take their API keys in turn."""
    keys = ",".join(f'"Bearer {t}"' for t in tokens)
    path.write_text(
        _THREAD_IDS
        + f"""
local keys = {{{keys}}}
function init(args)
  seq = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  seq = seq + 1
  wrk.headers["Authorization"] = keys[((tid + seq) % #keys) + 1]
  local body = string.format(
    '{{"model": "{MODEL}", "params": {{"prompt": "{prompt}", "seed": %d}}}}',
    tid * 100000000 + seq)
  return wrk.format("POST", "{GENERATIONS}", nil, body)
end
"""
    )
    return path


def cancel_script(path: Path, *, job_ids: list[str], threads: int) -> Path:
    """Each request cancels another job: thread t takes ids t, t + threads, … (wrapping round
    when they run out: cancelling a cancelled job answers 200 and changes nothing)."""
    ids = ",".join(f'"{i}"' for i in job_ids)
    path.write_text(
        _THREAD_IDS
        + f"""
local ids = {{{ids}}}
function init(args)
  n = tid
  wrk.method = "POST"
end
function request()
  local id = ids[(n % #ids) + 1]
  n = n + {threads}
  return wrk.format("POST", "{GENERATIONS}" .. id .. "/cancel/")
end
"""
    )
    return path


def _wrk_phases(
    args, base: str, fx, meter, log_dir: Path, results: dict, *, run_id: str
) -> tuple[int, list]:
    """wrk on each endpoint in turn (results filled in); returns (jobs cancelled over HTTP, the
    queued jobs the cancel phase walked)."""
    from django.db import connection

    say(f"[wrk] -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s per endpoint …")
    results["healthz"] = run_wrk(
        "GET /healthz", f"{base}/healthz", args, token=None, script=None, meter=meter
    )
    for path in GETS:
        results[path] = run_wrk(
            f"GET {path}", base + path, args, token=fx.token, script=None, meter=meter
        )
    prompt = f"bench api {run_id}"
    results["post"] = run_wrk(
        f"POST {GENERATIONS}", base + GENERATIONS, args, token=None,
        script=post_script(log_dir / "post.lua", prompt=prompt, tokens=fx.tokens),
        meter=meter,
    )  # fmt: skip
    from generations.models import Job, JobStatus

    queued = [
        str(pk)
        for pk in Job.objects.filter(organization=fx.org, status=JobStatus.QUEUED)
        .order_by("created_at")
        .values_list("pk", flat=True)
    ]
    connection.close()
    if not queued:
        raise SystemExit("no queued job to cancel: the POST phase accepted nothing")
    results["cancel"] = run_wrk(
        f"POST {GENERATIONS}<id>/cancel/", f"{base}{GENERATIONS}", args, token=fx.token,
        script=cancel_script(log_dir / "cancel.lua", job_ids=queued, threads=args.wrk_threads),
        meter=meter,
    )  # fmt: skip
    results["healthz2"] = run_wrk(
        "GET /healthz (again)", f"{base}/healthz", args, token=None, script=None, meter=meter
    )
    cancelled_over_http = Job.objects.filter(pk__in=queued, status=JobStatus.CANCELLED).count()
    connection.close()
    return cancelled_over_http, queued


def _wrk_report(args, results: dict, *, cancelled_over_http: int, queued: list) -> bool:
    """The wrk table; False when a measured request (not a cancel) failed."""
    floor = (results["healthz"].rps + results["healthz2"].rps) / 2
    say()
    say("=" * 96)
    say(
        f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.seconds}s; gunicorn "
        f"{args.gunicorn_workers} workers × {args.gunicorn_threads} threads; /healthz = mean of "
        f"the first and last run ({floor:,.0f} req/s)"
    )
    say("=" * 96)
    say(
        f"{'request':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'not 2xx':>9}{'CPU ms':>8}"
        f"{'ratio':>7}  target"
    )
    ok = True
    rows = [
        ("healthz", "GET /healthz", None),
        *((p, f"GET {p}", TARGET_GET) for p in GETS),
        ("post", f"POST {GENERATIONS}", TARGET_POST),
        ("cancel", f"POST {GENERATIONS}<id>/cancel/", None),
        ("healthz2", "GET /healthz (again)", None),
    ]
    for key, label, target in rows:
        r = results[key]
        ratio = r.rps / floor if floor else float("nan")
        mark = f"≥ {target:g} {verdict(ratio >= target)}" if target is not None else ""
        say(
            f"{label:<36}{r.rps:>9,.0f}{ms(r.p50):>9}{ms(r.p99):>9}{r.bad:>9}{r.cpu_ms:>8.2f}"
            f"{ratio:>7.2f}  {mark}"
        )
        if key not in ("cancel",) and r.bad:
            ok = False
    floor_cpu = (results["healthz"].cpu_ms + results["healthz2"].cpu_ms) / 2
    say(
        "  CPU-cost ratio (healthz CPU ms / the request's; what the req/s ratio tends to when "
        "the server is CPU-bound, less noisy on a shared machine): "
        + ", ".join(
            f"{label.split()[1]} {floor_cpu / results[key].cpu_ms:.2f}"
            for key, label, target in rows
            if target is not None
        )
    )
    repeats = results["cancel"].requests - cancelled_over_http
    say(
        f"  cancel: {cancelled_over_http:,} of the {len(queued):,} queued jobs cancelled; "
        f"{max(0, repeats):,} requests repeated a cancel once the ids ran out (200, no change)"
    )
    return ok


def broker_keys(queue: str) -> tuple[list[str], str]:
    """The Redis keys kombu keeps `queue` in: one list per priority step (the transport options
    in settings), and the hash of messages taken and not yet acknowledged."""
    from config.celery_app import app

    with app.connection_for_read() as conn:
        channel = conn.default_channel
        lists = dict.fromkeys(channel._q_for_pri(queue, step) for step in channel.priority_steps)
        return list(lists), channel.unacked_key


def broker_backlog(client, *, lists: list[str], unacked_key: str) -> int:
    """Messages waiting in the lists or taken and not yet acknowledged (one worker: all its)."""
    return sum(client.llen(key) for key in lists) + client.hlen(unacked_key)


def broker_drain(
    client, *, lists: list[str], unacked_key: str, timeout: float, poll: float = 0.1
) -> tuple[int, float]:
    """Wait until the worker has taken and acknowledged every message; returns (messages there
    at first, seconds waited)."""
    t0 = time.perf_counter()
    first = left = broker_backlog(client, lists=lists, unacked_key=unacked_key)
    while left:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"the worker left {left} messages in {lists[0]} after {timeout} s")
        time.sleep(poll)
        left = broker_backlog(client, lists=lists, unacked_key=unacked_key)
    return first, time.perf_counter() - t0


def publish_breakdown(ids: list[str]) -> tuple[list[float], list[float]]:
    """Per job: created → published (the rest of the request, commit, publish) and published →
    started (Redis, the worker's take, the task's start), in seconds."""
    from generations.models import Job

    rows = Job.objects.filter(pk__in=ids).values_list("created_at", "published_at", "started_at")
    web = [(p - c).total_seconds() for c, p, s in rows if p]
    worker = [(s - p).total_seconds() for c, p, s in rows if p and s]
    return web, worker


# --- Main -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api.py needs wrk: apt-get install -y wrk")
    started = time.perf_counter()
    run_id = time.strftime("%m%d%H%M%S") + uuid.uuid4().hex[:4]
    url, redis_url = args.database_url, args.redis_url
    db_name = _django.database_name(url)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)

    say(
        f"API benchmark {run_id} on {db_name} + {redis_url} ({os.cpu_count()} CPUs, load avg "
        f"{os.getloadavg()[0]:.2f})"
    )
    if _django.ensure_database(url, fresh=args.fresh):
        say(f"  created database {db_name}")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        GENERATIONS_SIMULATED_SPEEDUP="0",
        GENERATIONS_FREE_TIER_MAX_QUEUED="1000000000",
        ALLOWED_HOSTS=f"{HOST},localhost,testserver",
    )
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)
    _django.setup(url)
    import redis
    from django.db import connection

    redis.Redis.from_url(redis_url).flushdb()
    fx = fixtures(run_id, args.orgs)
    vacuum(url)
    connection.close()
    say(
        f"  migrated and seeded: {len(fx.orgs)} org(s) {fx.org.slug}…, model {MODEL}, Redis flushed"
    )

    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-api-{run_id}-"))
    procs = Procs(log_dir)
    meter = CpuMeter(url, db_name)
    env = server_env(url, redis_url, {}, log_dir)
    results: dict[str, WrkResult] = {}
    failed = True
    light = light_jobs = None
    try:
        port = free_port()
        base = f"http://{HOST}:{port}"
        say(
            f"[setup] gunicorn -w {args.gunicorn_workers} --threads {args.gunicorn_threads} on "
            f"{HOST}:{port} (logs in {log_dir}) …"
        )
        g = procs.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"{HOST}:{port}",
             "-w", str(args.gunicorn_workers), "--threads", str(args.gunicorn_threads),
             "--error-logfile", "-", "--no-control-socket"],
            env,
        )  # fmt: skip
        meter.track("gunicorn", g.pid)
        say(f"  ready in {wait_http_ready(procs, g, port, fx.token):.1f} s")
        # Every worker loads Django and opens its connections before anything is measured.
        subprocess.run(
            ["wrk", "-t2", "-c8", "-d2s", "-H", f"Authorization: Bearer {fx.token}",
             f"{base}/api/v1/models/"],
            capture_output=True, check=False,
        )  # fmt: skip

        if not args.latency_only:
            cancelled_over_http, queued = _wrk_phases(
                args, base, fx, meter, log_dir, results, run_id=run_id
            )

        # --- submit → succeeded -------------------------------------------------------------
        from generations.models import Job, JobStatus
        from generations.services import generation_cancel

        left = list(Job.objects.filter(organization__in=fx.orgs, status=JobStatus.QUEUED))
        for job in left:
            generation_cancel(job=job)
        connection.close()
        say(
            f"[submit→succeeded] {len(left):,} jobs left queued cancelled in-process; celery "
            f"-c 1 on gpu.{POOL}, {args.light_rate:g} jobs/s for {args.light_seconds:g} s …"
        )
        w = procs.start(
            "celery",
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", f"gpu.{POOL}",
             "-c", "1", "--pool", "prefork", "-l", "INFO", "-n", f"bench-api-{run_id}@%h",
             "--without-gossip", "--without-mingle"],
            env,
        )  # fmt: skip
        say(f"  worker ready in {wait_worker_ready(procs, w):.1f} s")
        meter.track("celery", w.pid)  # its CPU per job: less noisy than latency on a busy host
        wait_terminal(fx.orgs, timeout=120, label="drain")
        # Cancelled jobs are terminal, but their messages are still in Redis: the worker takes
        # each one ('already cancelled') before any job submitted behind it. Measured on top of
        # that backlog, the latency was the backlog's drain time, not the submit → succeeded
        # path (docs/performance.md, "API").
        lists, unacked_key = broker_keys(f"gpu.{POOL}")
        backlog, drained_s = broker_drain(
            redis.Redis.from_url(redis_url), lists=lists, unacked_key=unacked_key, timeout=300
        )
        say(f"  {backlog:,} stale messages taken by the worker in {drained_s:.1f} s first")
        light = load(
            "light", "POST", GENERATIONS, fx.tokens, port, threads=2, warmup=0.0,
            seconds=args.light_seconds, meter=meter, collect_ids=True, rate=args.light_rate,
            seed_base=3_000_000_000,
        )  # fmt: skip
        wait_terminal(fx.orgs, timeout=60, label="light")
        light_jobs = job_times(light.ids)
        failed = False
    finally:
        say("[teardown] stopping gunicorn and celery …")
        procs.stop_all()
        meter.close()
        if failed:
            say(f"  logs kept in {log_dir}")
            for name, _, _ in procs.items:
                say(f"  --- {name} (last lines) ---\n{procs.tail(name, 15)}")
        elif not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)

    # --- Report ---------------------------------------------------------------------------------
    ok = True
    if not args.latency_only:
        ok = _wrk_report(args, results, cancelled_over_http=cancelled_over_http, queued=queued)
    from credits.selectors import ledger_drift

    succeeded = light_jobs.statuses.get("succeeded", 0)
    p50, p99 = pct(light_jobs.total, 0.5), pct(light_jobs.total, 0.99)
    say()
    say(
        f"submit → succeeded ({args.light_rate:g}/s open loop, one worker, instant backend): "
        f"{succeeded}/{light_jobs.n} succeeded, p50 {ms(p50)} ms, p99 {ms(p99)} ms  "
        f"(target p50 ≤ {TARGET_OVERHEAD_P50_S * 1000:.0f} ms: "
        f"{verdict(p50 <= TARGET_OVERHEAD_P50_S)}); submit HTTP p50 "
        f"{ms(pct(light.latencies, 0.5))} ms"
    )
    say(
        f"  of which created → started p50 {ms(pct(light_jobs.queue, 0.5))} ms (the rest of the "
        f"request, commit, publish, the worker's take), started → finished p50 "
        f"{ms(pct(light_jobs.run, 0.5))} ms (claim, run and capture: started_at is the claim's "
        "clock, read before its statements)"
    )
    web, worker = publish_breakdown(light.ids)
    say(
        f"  created → published p50 {ms(pct(web, 0.5))} ms p99 {ms(pct(web, 0.99))} ms (the "
        f"rest of the request, commit, publish); published → started p50 "
        f"{ms(pct(worker, 0.5))} ms p99 {ms(pct(worker, 0.99))} ms (Redis, the worker's take, "
        "the task's start)"
    )
    n = len(light.ids) or 1
    cpu = light.cpu
    say(
        f"  CPU per job during the light phase: gunicorn {ms(cpu.get('gunicorn', 0) / n)} ms, "
        f"celery worker {ms(cpu.get('celery', 0) / n)} ms, PostgreSQL "
        f"{ms(cpu.get('postgres', 0) / n)} ms (the worker's backends exit with their "
        f"connections: a floor); machine busy {cpu.get('machine_busy_frac', 0):.0%}"
    )
    drift = ledger_drift()
    ok = ok and succeeded == light_jobs.n == len(light.ids) and not drift and light.errors == 0
    say(f"ledger_drift() = {drift[:5]!r}")
    say(
        f"Done in {time.perf_counter() - started:.0f} s (load avg {os.getloadavg()[0]:.2f}); "
        f"checks {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("\ninterrupted")
        sys.exit(130)
