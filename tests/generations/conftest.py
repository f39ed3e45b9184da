"""A real Celery worker process for the generations tests, on the test database and Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.db.models.sql import compiler

BASE_DIR = Path(settings.BASE_DIR)


class Worker:
    """`celery -A config worker` in its own process group, logging to a file."""

    def __init__(self, *, queues: str, concurrency: int, env: dict, log: Path):
        self.queues, self.concurrency, self.env, self.log = queues, concurrency, env, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Worker:
        offset = self.log.stat().st_size if self.log.exists() else 0
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "config",
                "worker",
                "-Q",
                self.queues,
                "-c",
                str(self.concurrency),
                "--pool",
                "prefork",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=BASE_DIR,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if " ready." in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{text[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def database_url_of(db: dict) -> str:
    """A DATABASE_URL for the test database: TCP host and port, or a Unix-socket directory
    (the embedded server of `make test`'s fallback passes it as OPTIONS["host"])."""
    auth = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    socket_dir = db["OPTIONS"].get("host") or (db["HOST"] if db["HOST"].startswith("/") else "")
    if socket_dir:
        return f"postgres://{auth}@/{db['NAME']}?host={quote(socket_dir, safe='/')}"
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_env(transactional_db, tmp_path):
    """Environment for worker processes: this test's database, the test Redis, an instant
    simulated backend unless a test slows it down."""
    url = database_url_of(connection.settings_dict)
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": url,
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "GENERATIONS_SIMULATED_SPEEDUP": "0",
            "GENERATIONS_LEASE_S": str(settings.GENERATIONS_LEASE_S),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """start_worker(queues="gpu.a100", concurrency=1, **env overrides) → a ready Worker.
    Every worker started is stopped after the test."""
    started: list[Worker] = []

    def start(*, queues: str = "gpu.a100", concurrency: int = 1, **env) -> Worker:
        full_env = {**worker_env, **{k: str(v) for k, v in env.items()}}
        worker = Worker(
            queues=queues, concurrency=concurrency, env=full_env, log=tmp_path / "worker.log"
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def purge_queues():
    """Start each test with empty broker queues."""
    from config.celery_app import app

    with app.connection_for_write() as conn:
        for pool in ("a100", "l4"):
            with contextlib.suppress(Exception):  # the queue may not exist yet
                app.amqp.queues[f"gpu.{pool}"].bind(conn.default_channel).purge()
    yield


@pytest.fixture
def compiled(monkeypatch):
    """The SQL compilations (`as_sql` of every ORM compiler, outermost calls only)."""
    calls: list[str] = []
    depth = [0]
    for cls in (compiler.SQLCompiler, compiler.SQLUpdateCompiler, compiler.SQLInsertCompiler):
        real = cls.__dict__["as_sql"]

        def counted(self, *args, _real=real, **kwargs):
            depth[0] += 1
            try:
                return _real(self, *args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    calls.append(type(self).__name__ + ":" + self.query.model.__name__)

        monkeypatch.setattr(cls, "as_sql", counted)
    return calls


@pytest.fixture
def own_redis(settings):
    """The broker of this process (and of workers it starts) on a Redis of the test's own, on a
    free port, which the test may stop, restart or fail over for real."""
    from tests.redis_outage import broker_on_own_redis

    with broker_on_own_redis() as server:
        settings.CELERY_BROKER_URL = server.url(0)
        yield server


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting: {message}")
