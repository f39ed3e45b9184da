"""The reaper notices that the broker lost its state and publishes the lost jobs at once.

Redis runs without persistence: a restart loses every message it held. Before, the reaper
looked only at jobs queued longer than GENERATIONS_REQUEUE_AFTER_S (120 s), so jobs accepted
around an outage waited up to ~2.5 minutes (the issue's chaos run: 108 s). Now each broker scan
reads the server's identity (`INFO server`: run_id, uptime); the jobs published before the
server started (or before another server took over) are looked at on the next run, and still
only those whose message the broker does not hold are published again.

Real Redis throughout: a Redis of the test's own restarted for real (stateless: the uptime
alone tells it), and the shared test Redis with `broker_identity` wrapped to report another
server (its lists flushed by the test) — the shared server can't be restarted."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import redis as redis_py
from django.conf import settings
from django.utils import timezone

from config.celery_app import app
from generations import broker, services
from generations.broker import BrokerIdentity, BrokerScan, broker_scan
from generations.models import Job
from generations.services import reaper
from generations.tasks import run_generation
from tests.generations.test_reaper_republish import (
    REQUEUE_AFTER_S,
    delete_messages,
    messages,
    submit_many,
)
from tests.redis_outage import point_broker_at

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("purge_queues", "no_limits")]


@pytest.fixture
def no_limits(settings):
    from accounts.models import Plan

    settings.GENERATIONS_REQUEUE_AFTER_S = REQUEUE_AFTER_S
    settings.GENERATIONS_REAPER_REPUBLISH_MAX = 200
    settings.GENERATIONS_FREE_TIER_MAX_QUEUED = 1000
    Plan.objects.update(
        max_concurrent_jobs=None, daily_generation_cap=None, api_rate_limit_per_min=None
    )


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
    """The reaper's memory of the servers it saw starts empty (a new worker process)."""
    monkeypatch.setattr(reaper, "_seen", {})


@pytest.fixture
def client():
    """The broker's Redis client, with its channel (queue and unacked key names)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as redis_client:
            redis_client.channel = channel
            yield redis_client


class OtherServer:
    """Wraps `broker_identity`: after `restart()` (or `failover()`) every scan sees another
    Redis server — another run_id; since the restart, its uptime counts from then, after a
    failover the real (long) uptime stays. The test empties the lists itself."""

    def __init__(self, real):
        self.real = real
        self.run_id = None
        self.started_ts = None

    def restart(self, run_id: str = "f" * 40) -> None:
        self.run_id, self.started_ts = run_id, time.time()

    def failover(self, run_id: str = "e" * 40) -> None:
        self.run_id, self.started_ts = run_id, None

    def __call__(self, client):
        identity = self.real(client)
        if self.run_id is None:
            return identity
        uptime = (
            identity.uptime_s if self.started_ts is None else int(time.time() - self.started_ts)
        )
        return BrokerIdentity(run_id=self.run_id, uptime_s=uptime, read_at_ts=time.time())


@pytest.fixture
def server(monkeypatch):
    wrapped = OtherServer(broker.broker_identity)
    monkeypatch.setattr(broker, "broker_identity", wrapped)
    return wrapped


def flush(client) -> None:
    """What a restart without persistence leaves: no list, no unacked message."""
    keys = [k for k in client.keys("gpu.*")] + [client.channel.unacked_key]
    client.delete(*keys, client.channel.unacked_index_key)


def publish_count(jobs) -> Counter:
    return Counter(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("publish_count", flat=True)
    )


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_the_scan_reads_the_servers_identity_from_info(client):
    info = redis_py.Redis.from_url(settings.CELERY_BROKER_URL).info("server")
    before = time.time()
    scan = broker_scan(pools={"a100"}, now_ts=before, stale_after_s=REQUEUE_AFTER_S, limit=1000)
    identity = scan.identity
    assert identity.run_id == info["run_id"] and len(identity.run_id) == 40
    assert abs(identity.uptime_s - info["uptime_in_seconds"]) <= 2
    assert before <= identity.read_at_ts <= time.time()
    # its start, on this host's clock (the latest it can be: whole seconds, one added)
    assert 0 <= identity.started_at_ts - (before - info["uptime_in_seconds"]) <= 3
    url = urlsplit(settings.CELERY_BROKER_URL)
    assert scan.broker.endswith(f"{url.hostname}:{url.port}{url.path}")  # the memory's key
    # The fields the fault simulation's stand-in scan leaves out default to "unknown".
    assert BrokerScan(complete={"a100"}).identity is None


def test_after_a_restart_the_lost_jobs_are_published_at_the_next_run_not_after_the_horizon(
    django_capture_on_commit_callbacks, client, server
):
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=6)
    assert services.jobs_reap()["requeued"] == 0  # same server: it remembers this run_id
    # A message gone without a restart, younger than the horizon, is left to the horizon.
    delete_messages(client, [jobs[0].pk])
    assert services.jobs_reap()["requeued"] == 0

    server.restart()
    flush(client)
    assert messages(client) == Counter()
    # Jobs accepted once it is back are published to the new server (present, not checked;
    # past the seconds the whole-second uptime leaves in doubt).
    time.sleep(2.1)
    with django_capture_on_commit_callbacks(execute=True):
        after = [
            services.generation_submit(
                organization=job.organization, model_slug=job.model.slug, params={"prompt": "n"}
            )[0]
            for job in jobs[:2]
        ]

    result = services.jobs_reap()  # seconds after the restart, not 120 s later
    assert (result["broker_restarted"], result["requeued"], result["checked"]) == (
        1,
        len(jobs),
        len(jobs),
    )
    # every job has exactly one message: the lost ones got theirs again, no one a second
    assert messages(client) == Counter({str(j.pk): 1 for j in jobs + after})
    assert publish_count(jobs) == Counter({2: len(jobs)})
    assert publish_count(after) == Counter({1: len(after)})

    # Later runs — the same server — publish nothing more, however long the jobs wait.
    assert services.jobs_reap(now=later(1))["requeued"] == 0
    for minutes in (3, 10, 30):
        assert services.jobs_reap(now=later(minutes * 60))["requeued"] == 0
    assert sum(messages(client).values()) == len(jobs) + len(after)


def test_only_what_the_restarted_broker_lacks_is_published_again(
    django_capture_on_commit_callbacks, client, server
):
    """A server that kept some messages (loaded from a dump, a replica that had them): those
    jobs are not published again."""
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=10)
    lost = jobs[::3]
    server.restart()
    delete_messages(client, [j.pk for j in lost])

    result = services.jobs_reap()
    assert (result["requeued"], result["present"], result["checked"]) == (
        len(lost),
        len(jobs) - len(lost),
        len(jobs),
    )
    assert messages(client) == Counter({str(j.pk): 1 for j in jobs})
    counts = dict(Job.objects.values_list("pk", "publish_count"))
    assert {pk for pk, c in counts.items() if c == 2} == {j.pk for j in lost}
    assert services.jobs_reap()["requeued"] == 0


def test_a_restart_is_republished_at_the_bounded_rate_highest_priority_first(
    django_capture_on_commit_callbacks, client, server, settings
):
    settings.GENERATIONS_REAPER_REPUBLISH_MAX = 4
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=5)  # 10 jobs
    server.restart()
    flush(client)

    first = services.jobs_reap()
    assert first["requeued"] == 4
    studio = {str(j.pk) for j in jobs if j.priority == 1}  # 4 studio jobs of 10
    assert set(messages(client)) == studio
    # The next runs (well within the horizon) go on with the rest: the server's start time,
    # not this process's memory, says what is lost.
    assert services.jobs_reap(now=later(30))["requeued"] == 4
    assert services.jobs_reap(now=later(60))["requeued"] == 2
    assert services.jobs_reap(now=later(90))["requeued"] == 0
    assert messages(client) == Counter({str(j.pk): 1 for j in jobs})


def test_a_failover_to_another_server_is_told_by_the_run_id(
    django_capture_on_commit_callbacks, client, server
):
    """Another server with a long uptime (a replica promoted): its start says nothing, the run_id
    this process saw at its previous run does."""
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=4)
    assert services.jobs_reap()["requeued"] == 0  # remembers the server it saw
    server.failover()
    lost = jobs[:3]  # the replica had not received these yet
    delete_messages(client, [j.pk for j in lost])

    result = services.jobs_reap()
    assert (result["broker_restarted"], result["requeued"]) == (1, len(lost))
    assert messages(client) == Counter({str(j.pk): 1 for j in jobs})
    assert services.jobs_reap(now=later(30))["requeued"] == 0


def test_a_process_that_never_saw_the_old_server_leaves_a_failover_to_the_horizon(
    django_capture_on_commit_callbacks, client, server
):
    """The documented limit of the run_id memory (per process): a new reaper process has no
    previous run_id, so a failover it did not witness is found GENERATIONS_REQUEUE_AFTER_S
    later, as before. A restart is always seen (the uptime needs no memory)."""
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=2)
    server.failover()
    delete_messages(client, [jobs[0].pk])
    assert services.jobs_reap()["requeued"] == 0
    assert services.jobs_reap(now=later(REQUEUE_AFTER_S + 1))["requeued"] == 1


def test_a_real_redis_restart_is_seen_by_its_uptime(django_capture_on_commit_callbacks, own_redis):
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=4)
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as c:
            c.channel = channel
            assert sum(messages(c).values()) == len(jobs)
    before = redis_py.Redis(port=own_redis.port).info("server")["run_id"]

    own_redis.stop()  # SHUTDOWN NOSAVE: every message is gone
    own_redis.start()
    point_broker_at(own_redis.url(0))
    assert redis_py.Redis(port=own_redis.port).info("server")["run_id"] != before
    # Kept by the "restarted" server (as if reloaded): two jobs' messages, published directly.
    kept = jobs[:2]
    for job in kept:
        run_generation.apply_async(
            args=[str(job.pk)], queue=f"gpu.{job.model.pool.slug}", priority=job.priority
        )

    # This process never saw the old server: the uptime alone tells the restart.
    result = services.jobs_reap()
    assert (result["broker_restarted"], result["requeued"], result["present"]) == (
        1,
        len(jobs) - len(kept),
        len(kept),
    )
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as c:
            c.channel = channel
            assert messages(c) == Counter({str(j.pk): 1 for j in jobs})
    assert services.jobs_reap()["requeued"] == 0
