"""A Redis server of the test's own (port 6391) that the test stops and starts again, with the
cache and the Celery broker of this process pointed at it: Redis outages for real, not mocked.

Used by the degraded-mode tests (tests/config/test_degraded_modes.py,
tests/generations/test_degraded.py): `outage` is the fixture (import `outage_fixture`);
`outage.stop()` takes Redis away, `outage.start()` brings it back (empty: no persistence, as
in the chaos run).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import pools as kombu_pools
from redis.backoff import NoBackoff
from redis.retry import Retry

PORT = 6391


class OwnRedis:
    """`redis-server --port 6391` without persistence, daemonized; stopped with SHUTDOWN."""

    def __init__(self, port: int = PORT):
        self.port = port

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _client(self) -> redis.Redis:
        # No retries: "is it down?" must answer at once (redis-py retries 10 times by default).
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )

    def up(self) -> bool:
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10) -> None:
        if self.up():
            return
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self._wait(up=True, timeout=timeout)

    def stop(self, timeout: float = 10) -> None:
        with contextlib.suppress(redis.RedisError):  # the connection closes as it shuts down
            self._client().shutdown(nosave=True)
        self._wait(up=False, timeout=timeout)

    def _wait(self, *, up: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.up() == up:
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis on port {self.port} still {'down' if up else 'up'}")

    def messages(self, queue: str) -> list[bytes]:
        """Every message waiting in `queue` on this server, all priority levels (kombu's Redis
        transport keeps one list per priority step: `queue`, `queue:1` … with sep ":")."""
        client = self._client()
        found: list[bytes] = []
        for key in client.scan_iter(match=f"{queue}*"):
            if key == queue.encode() or key.startswith(f"{queue}:".encode()):
                found += client.lrange(key, 0, -1)
        return found


def point_broker_at(url: str) -> None:
    """Send this process's publishes to `url` from now on (fresh connection pools)."""
    from config.celery_app import app

    app.conf.broker_url = url
    app.pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    kombu_pools.reset()  # kombu caches producer pools per connection URL, process-wide


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def broker_on_own_redis() -> Iterator[OwnRedis]:
    """This process's broker (publishes, and workers started meanwhile that read
    `app.conf.broker_url`) on a Redis of its own, on a free port, which the caller may stop,
    restart or fail over for real; the broker pointed back and the server stopped after."""
    from config.celery_app import app

    server = OwnRedis(port=free_port())
    server.start()
    real_broker = app.conf.broker_url
    point_broker_at(server.url(0))
    try:
        yield server
    finally:
        point_broker_at(real_broker)
        server.stop()


def _reset_limiter_state() -> None:
    from config.api import throttling

    throttling.redis_breaker.reset()
    throttling.local_limiter.clear()


@pytest.fixture(name="outage")
def outage_fixture(settings):
    """The cache and the broker on our own Redis (port 6391, running at the start). Stopped
    and everything pointed back afterwards, whatever the test did."""
    from config.celery_app import app

    server = OwnRedis()
    server.stop()  # a leftover of an interrupted run
    server.start()
    real_broker = app.conf.broker_url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url(0),
            "KEY_PREFIX": "degraded-test",
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }
    settings.REDIS_URL = server.url(0)
    settings.CELERY_BROKER_URL = server.url(0)
    point_broker_at(server.url(0))
    _reset_limiter_state()
    try:
        yield server
    finally:
        point_broker_at(real_broker)
        server.stop()
        _reset_limiter_state()
