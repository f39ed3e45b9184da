"""The broker connection of a worker when Redis restarts under it (config/celery_transport.py).

Replays, with kombu alone and a real Redis of the test's own on a free port, what Celery's
consumer does when the broker goes away while a task is running (acks_late: its message is
unacknowledged) and the worker waits on BRPOP and on remote control's pub/sub channel:
`connection.collect()`, then `connection.close()`, then the running task's ack once Redis is
back. kombu's own transport raises AttributeError there (the worker's "Unrecoverable error");
the project's closes, acks and consumes again. The same through a real worker process:
tests/generations/test_redis_restart.py.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.common import ignore_errors

from config.celery_transport import Transport
from tests.redis_outage import OwnRedis

STOCK = "kombu.transport.redis:Transport"
OURS = "config.celery_transport:Transport"
TASKS = Queue("gpu.a100", Exchange("celery", type="direct"), "gpu.a100")
CONTROL = Queue("control-test", Exchange("control-test.pidbox", type="fanout"), auto_delete=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis():
    server = OwnRedis(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def publish(url: str, body: dict) -> None:
    with Connection(url) as conn, conn.Producer() as producer:
        producer.publish(body, exchange=TASKS.exchange, routing_key="gpu.a100", declare=[TASKS])


def worker_connection(url: str, transport: str) -> Connection:
    return Connection(
        url, transport=transport, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS
    )


def drain_until(conn: Connection, received: list, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not received and time.monotonic() < deadline:
        with contextlib.suppress(socket.timeout):
            conn.drain_events(timeout=0.5)


def lose_redis_while_a_task_runs(server: OwnRedis, transport: str):
    """A consumer holding one unacknowledged message (its task is running), a BRPOP pending
    for the next one and a pub/sub channel, as a worker has; then Redis stops and the lost
    connection is collected and closed as Celery's consumer does. → (connection, message,
    what close() raised)"""
    publish(server.url(), {"job": 1})
    conn = worker_connection(server.url(), transport)
    received = []
    tasks = conn.Consumer([TASKS], callbacks=[lambda body, message: received.append(message)])
    tasks.qos(prefetch_count=2)
    tasks.consume()
    control = conn.Consumer([CONTROL], channel=conn.channel(), no_ack=True, callbacks=[])
    control.consume()
    drain_until(conn, received)
    [running] = received
    with contextlib.suppress(socket.timeout):
        conn.drain_events(timeout=0.2)  # nothing else queued: a BRPOP stays pending

    server.stop()
    with contextlib.suppress(Exception):  # Celery's consumer ignores whatever collect raises
        conn.collect(socket_timeout=1)
    try:
        ignore_errors(conn, conn.close)  # ...but only connection errors of close()
    except Exception as exc:  # what escapes is the finding
        return conn, running, exc
    return conn, running, None


def test_kombus_own_transport_loses_its_connection_parameters_when_redis_stops(own_redis):
    """The bug the project's transport works around (kombu 5.7.0). If this fails, kombu has
    fixed it: config/celery_transport.py can go."""
    _conn, running, raised = lose_redis_while_a_task_runs(own_redis, STOCK)
    assert isinstance(raised, AttributeError)
    assert "hostname" in str(raised)
    own_redis.start()
    with pytest.raises(AttributeError, match="hostname"):
        running.ack()


def test_a_lost_connection_closes_and_the_running_task_acks_once_redis_is_back(own_redis):
    _conn, running, raised = lose_redis_while_a_task_runs(own_redis, OURS)
    assert raised is None
    own_redis.start()  # empty: the unacknowledged message died with the old Redis
    running.ack()

    publish(own_redis.url(), {"job": 2})
    with worker_connection(own_redis.url(), OURS) as conn:
        received = []
        with conn.Consumer([TASKS], callbacks=[lambda body, m: received.append((body, m))]):
            drain_until(conn, received)
        [(body, message)] = received
        message.ack()
    assert body == {"job": 2}


def test_the_broker_of_a_redis_url_uses_the_projects_transport():
    from config.celery_app import app

    assert settings.CELERY_BROKER_URL.startswith("redis://")
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)
