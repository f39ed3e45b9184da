#!/usr/bin/env python
"""Run ruff and the pytest suite on PostgreSQL and Redis (what `make test` runs).

PostgreSQL and Redis come from, in order:
  1. DATABASE_URL / REDIS_URL in the environment;
  2. local servers on 127.0.0.1:5432 (user postgres, trust auth) and 127.0.0.1:6379;
  3. throwaway servers started here from installed binaries (initdb/pg_ctl, redis-server) in a
     temporary directory on free ports, stopped and removed afterwards.
RUN_TESTS_FORCE_THROWAWAY=1 skips steps 1-2 and always starts throwaway servers.
It never falls back to SQLite: with no PostgreSQL or Redis to be had it exits non-zero.

Browser tests drive Debian's chromium (/usr/bin/chromium); when it is missing and we are root
with apt-get, it is installed; otherwise BROWSER_TESTS=skip is set and those tests skip.

Usage: scripts/run_tests.py [pytest args...]
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
LOCAL_PG = ("127.0.0.1", 5432)
LOCAL_REDIS = ("127.0.0.1", 6379)
DB_NAME = "gpucredits"  # pytest-django creates and destroys test_gpucredits
# A database number of its own: the test suite flushes its Redis database between tests.
REDIS_TEST_DB = 15


class Unavailable(Exception):
    """A service the tests need could not be found or started."""


def say(msg: str) -> None:
    print(f"run_tests: {msg}", flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n{msg}\n{bar}\n", file=sys.stderr, flush=True)


_got_sigterm = False


def _on_sigterm(signum, frame):  # SIGTERM behaves like Ctrl-C: stop pytest, clean up
    global _got_sigterm
    _got_sigterm = True
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# --- PostgreSQL -------------------------------------------------------------------------------
def pg_reachable(host: str, port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host=host, port=port, user="postgres", dbname="postgres", connect_timeout=3
        ):
            return True
    except Exception:
        return False


def _pg_version_key(path: str) -> tuple:
    m = re.search(r"/postgresql/(\d+(?:\.\d+)?)/", path)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


def find_pg_bindir() -> Path | None:
    candidates: list[str] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/"), key=_pg_version_key, reverse=True)
    for d in candidates:
        if all(os.access(os.path.join(d, exe), os.X_OK) for exe in ("initdb", "pg_ctl")):
            return Path(d)
    return None


def unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise Unavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")


class ThrowawayPostgres:
    """A temporary PostgreSQL cluster on 127.0.0.1:<free port>, removed on stop()."""

    def __init__(self) -> None:
        self.tmp: Path | None = None
        self.started = False
        self.prefix: list[str] = []

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.prefix + args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,  # Ctrl-C must not reach the server; stop() stops it
            **kw,
        )

    def start(self) -> str:
        bindir = find_pg_bindir()
        if bindir is None:
            raise Unavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                "/usr/lib/postgresql/*/bin"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="gpucredits-pg-", dir="/tmp"))
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = unprivileged_user()
            runuser = shutil.which("runuser") or next(
                (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(p, os.X_OK)), None
            )
            if runuser is None:
                raise Unavailable("running as root but 'runuser' is not available for initdb")
            pw = pwd.getpwnam(user)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.prefix = [runuser, "-u", user, "--"]
        data, sock, log = self.tmp / "data", self.tmp / "sock", self.tmp / "postgres.log"
        self._run(["mkdir", str(sock)], check=True)
        r = self._run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        )  # fmt: skip
        if r.returncode != 0:
            raise Unavailable(f"initdb failed:\n{r.stdout}{r.stderr}")
        self.port = free_port()
        opts = (
            f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        r = self._run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
             "-w", "-t", "60", "start"]
        )  # fmt: skip
        if r.returncode != 0:
            logtext = log.read_text(errors="replace") if log.exists() else ""
            raise Unavailable(f"pg_ctl start failed:\n{r.stdout}{r.stderr}{logtext}")
        self.started = True
        self.bindir = bindir
        self.data = data
        say(f"PostgreSQL: started throwaway on port {self.port} ({bindir}, data in {self.tmp})")
        return f"postgres://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def stop(self) -> None:
        if self.started:
            r = self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                 "-w", "-t", "30", "stop"]
            )  # fmt: skip
            if r.returncode != 0:
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                     "-w", "stop"]
                )  # fmt: skip
            self.started = False
            say(f"PostgreSQL: stopped throwaway on port {self.port}")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --- Redis ------------------------------------------------------------------------------------
def redis_reachable(host: str, port: int) -> bool:
    import redis

    try:
        return bool(
            redis.Redis(host=host, port=port, socket_connect_timeout=2, socket_timeout=2).ping()
        )
    except Exception:
        return False


class ThrowawayRedis:
    """redis-server on 127.0.0.1:<free port>, keeping nothing on disk, stopped on stop()."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.tmp: Path | None = None

    def start(self) -> str:
        exe = shutil.which("redis-server")
        if exe is None:
            raise Unavailable("no 'redis-server' binary on PATH")
        self.tmp = Path(tempfile.mkdtemp(prefix="gpucredits-redis-"))
        self.port = free_port()
        self.log = open(self.tmp / "redis.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.tmp)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not redis_reachable("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.flush()
                text = (self.tmp / "redis.log").read_text(errors="replace")
                raise Unavailable(f"redis-server did not come up:\n{text}")
            time.sleep(0.1)
        say(f"Redis: started throwaway on port {self.port}")
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            say(f"Redis: stopped throwaway on port {self.port}")
            self.proc = None
            self.log.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# --- Resolution -------------------------------------------------------------------------------
def resolve_database(force_throwaway: bool, started: list) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url and not force_throwaway:
        if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql", "psql", "postgis"):
            raise Unavailable(
                f"DATABASE_URL={redact(url)} is not PostgreSQL; the tests run on PostgreSQL only"
            )
        say(f"PostgreSQL: from DATABASE_URL ({redact(url)})")
        return url
    if not force_throwaway and pg_reachable(*LOCAL_PG):
        say(f"PostgreSQL: existing at {LOCAL_PG[0]}:{LOCAL_PG[1]} (tests use test_{DB_NAME})")
        return f"postgres://postgres@{LOCAL_PG[0]}:{LOCAL_PG[1]}/{DB_NAME}"
    if not force_throwaway:
        say(f"PostgreSQL: none at {LOCAL_PG[0]}:{LOCAL_PG[1]}; starting a throwaway one")
    pg = ThrowawayPostgres()
    started.append(pg)
    return pg.start()


def resolve_redis(force_throwaway: bool, started: list) -> str:
    url = os.environ.get("REDIS_URL", "")
    if url and not force_throwaway:
        say(f"Redis: from REDIS_URL ({redact(url)})")
        return url
    if not force_throwaway and redis_reachable(*LOCAL_REDIS):
        say(f"Redis: existing at {LOCAL_REDIS[0]}:{LOCAL_REDIS[1]} (database {REDIS_TEST_DB})")
        return f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}/{REDIS_TEST_DB}"
    if not force_throwaway:
        say(f"Redis: none at {LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}; starting a throwaway one")
    rd = ThrowawayRedis()
    started.append(rd)
    return rd.start()


def ensure_chromium(env: dict) -> None:
    if env.get("BROWSER_TESTS") == "skip":
        say("Chromium: BROWSER_TESTS=skip is set; browser tests will skip")
        return
    if os.access(CHROMIUM, os.X_OK):
        say(f"Chromium: {CHROMIUM}")
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"Chromium: {CHROMIUM} missing; installing Debian's chromium with apt-get ...")
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = "apt-get update -qq && apt-get install -y -qq chromium"
        r = subprocess.run(
            ["bash", "-c", cmd], env=apt_env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True,
        )  # fmt: skip
        if r.returncode == 0 and os.access(CHROMIUM, os.X_OK):
            say(f"Chromium: installed {CHROMIUM}")
            return
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        reason = f"`{cmd}` exited with {r.returncode}, and {CHROMIUM} is still missing.\n{tail}"
    else:
        reason = "not root, or no apt-get: cannot install it (apt-get install chromium)"
    loud(
        f"WARNING: {CHROMIUM} is missing and could not be installed.\n{reason}\n"
        "Browser tests will be SKIPPED (BROWSER_TESTS=skip)."
    )
    env["BROWSER_TESTS"] = "skip"


def run_ruff(env: dict) -> bool:
    ok = True
    for args in (["check", "."], ["format", "--check", "."]):
        say(f"ruff {' '.join(args)}")
        r = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=BASE_DIR, env=env)
        ok = ok and r.returncode == 0
    if not ok:
        loud("ruff found problems (see above; `make fmt` fixes most). The run will FAIL.")
    return ok


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    force_throwaway = os.environ.get("RUN_TESTS_FORCE_THROWAWAY", "") not in ("", "0", "false")
    started: list = []
    env = dict(os.environ)
    (BASE_DIR / "var" / "staticfiles").mkdir(parents=True, exist_ok=True)  # STATIC_ROOT
    try:
        lint_ok = run_ruff(env)
        try:
            database_url = resolve_database(force_throwaway, started)
            redis_url = resolve_redis(force_throwaway, started)
        except Unavailable as exc:
            loud(
                f"ERROR: cannot run the tests: {exc}\n"
                "The tests need PostgreSQL and Redis: set DATABASE_URL / REDIS_URL, run them "
                "locally on 127.0.0.1:5432 / :6379, or install their server binaries "
                "(postgresql, redis-server) so that throwaway ones can be started."
            )
            return 2
        ensure_chromium(env)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.test",
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            DJANGO_ALLOW_ASYNC_UNSAFE="true",  # Playwright's sync API runs beside Django
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.pop("CELERY_BROKER_URL", None)  # the test settings derive it from REDIS_URL
        say(f"pytest {' '.join(argv)}".rstrip())
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *argv], cwd=BASE_DIR, env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            # A terminal's Ctrl-C reached pytest too (same process group); SIGTERM did not.
            if _got_sigterm and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            # Let pytest stop its tests, drop its test database and print its summary.
            with contextlib.suppress(KeyboardInterrupt):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
        if code == 5:
            loud("ERROR: pytest collected no tests (exit code 5); that counts as a failure.")
            return 5
        if code != 0:
            say(f"pytest failed (exit code {code})")
            return code
        if not lint_ok:
            say("tests passed, but ruff found problems: failing")
            return 1
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for service in reversed(started):
            try:
                service.stop()
            except Exception as exc:
                say(f"could not stop {type(service).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
