"""Publishing a run task (generations.services.submission.enqueue) through the broker transport
(config/celery_transport.py), issue 16: kombu built a new `redis.Redis` client object for every
publish; the channel now reuses one (its connection pool's). Publishes still reach Redis, use
no new connection, and a broker that is down still fails the publish the way `enqueue`'s
bookkeeping expects (kombu's OperationalError, caught: the job stays queued for the reaper)."""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings as django_settings
from kombu.exceptions import OperationalError

from config import celery_transport
from config.celery_app import app
from generations.services.submission import enqueue
from generations.tasks import run_generation
from tests.redis_outage import broker_on_own_redis

pytestmark = pytest.mark.django_db

POOL = "h2test"  # a queue of its own: gpu.h2test
QUEUE = f"gpu.{POOL}"


def broker() -> redis.Redis:
    return redis.Redis.from_url(app.conf.broker_url)


def queued(client: redis.Redis) -> list[bytes]:
    """The messages waiting in QUEUE, every priority step (kombu: `queue`, `queue:1`, …)."""
    found: list[bytes] = []
    for key in client.scan_iter(match=f"{QUEUE}*"):
        if key == QUEUE.encode() or key.startswith(f"{QUEUE}:".encode()):
            found += client.lrange(key, 0, -1)
    return found


@pytest.fixture
def clean_queue():
    client = broker()
    keys = lambda: [k for k in client.scan_iter(match=f"{QUEUE}*")]  # noqa: E731
    for key in keys():
        client.delete(key)
    yield client
    for key in keys():
        client.delete(key)


@pytest.fixture
def outage():
    """The broker on a Redis of this test's own (a port of its own: tests/redis_outage.py's
    6391 is the degraded-mode tests'), stopped and started by the test."""
    with broker_on_own_redis() as server:
        yield server


@pytest.fixture
def clients_built(monkeypatch):
    """How many Redis client objects the broker's channels build."""
    built: list[object] = []
    real = celery_transport.Channel._create_client

    def counted(self, *args, **kwargs):
        client = real(self, *args, **kwargs)
        built.append(client)
        return client

    monkeypatch.setattr(celery_transport.Channel, "_create_client", counted)
    return built


def test_the_broker_transport_is_ours():
    assert django_settings.CELERY_BROKER_TRANSPORT == "config.celery_transport:Transport"
    with app.connection_for_write() as connection:
        assert isinstance(connection.default_channel, celery_transport.Channel)


def test_publishes_reuse_one_client_and_one_connection(clean_queue, clients_built):
    enqueue(job_id=uuid.uuid4(), pool_slug=POOL, priority=5)  # the producer and its channel
    clients_built.clear()
    connections_before = clean_queue.info("stats")["total_connections_received"]
    ids = [str(uuid.uuid4()) for _ in range(25)]
    for job_id in ids:
        assert enqueue(job_id=job_id, pool_slug=POOL, priority=5) is True
    # The stats client's own INFO is one connection of ours, the publishes' at most one more.
    assert clean_queue.info("stats")["total_connections_received"] - connections_before <= 1
    assert len(clients_built) <= 1, f"{len(clients_built)} Redis clients for 25 publishes"
    raw = b"".join(queued(clean_queue)).decode()
    assert all(job_id in raw for job_id in ids)  # every one reached the queue
    assert f"['{ids[0]}']" in raw  # argsrepr as Celery writes it


def test_a_broker_outage_still_fails_the_publish_as_before(outage, clients_built, caplog):
    """Redis down: the publish raises kombu's OperationalError (after its retries), which
    `enqueue` catches (False, logged, the job left for the reaper); Redis back: the next
    publish goes through on a fresh connection, no restart needed."""
    assert enqueue(job_id=uuid.uuid4(), pool_slug=POOL, priority=5) is True
    outage.stop()
    policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
    with pytest.raises(OperationalError):
        run_generation.apply_async(
            args=["x"], queue=QUEUE, priority=5, retry=True, retry_policy=policy
        )
    job_id = str(uuid.uuid4())
    assert enqueue(job_id=job_id, pool_slug=POOL, priority=5) is False
    assert f"Could not publish job {job_id}" in caplog.text
    outage.start()
    again = str(uuid.uuid4())
    assert enqueue(job_id=again, pool_slug=POOL, priority=5) is True
    raw = b"".join(outage.messages(QUEUE)).decode()
    assert again in raw and job_id not in raw
