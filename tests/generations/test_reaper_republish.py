"""The reaper publishes again only what the broker really lost, at a bounded rate.

Bench-like: N jobs queued in Redis, K of their messages deleted → the reaper publishes exactly
those K again and not the rest, and running it again publishes nothing (no amplification: in
the issue's chaos run it republished 1,345 messages for far fewer lost ones, every job waiting
past GENERATIONS_REQUEUE_AFTER_S behind a saturated pool getting a second copy). A message a
dead worker took but never started (kombu's `unacked` hash) counts as lost; one a live worker
took lately, or holds until its countdown, does not."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Plan
from config.celery_app import app
from generations import services
from generations.models import Job, JobStatus
from tests.factories import make_ai_model, make_org, make_pool
from tests.redis_outage import point_broker_at

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("purge_queues", "no_limits")]

REQUEUE_AFTER_S = 120


@pytest.fixture
def no_limits(settings):
    settings.GENERATIONS_REQUEUE_AFTER_S = REQUEUE_AFTER_S
    settings.GENERATIONS_REAPER_REPUBLISH_MAX = 200
    settings.GENERATIONS_FREE_TIER_MAX_QUEUED = 1000
    Plan.objects.update(
        max_concurrent_jobs=None, daily_generation_cap=None, api_rate_limit_per_min=None
    )


@pytest.fixture
def redis():
    """The broker's Redis client and channel (for the queue keys and the unacked hash); the
    unacked entries a test adds are removed after it."""
    added: list[str] = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as client:
            client.added = added
            client.channel = channel
            yield client
            for tag in added:
                client.hdel(channel.unacked_key, tag)
                client.zrem(channel.unacked_index_key, tag)


def queue_keys(client, pool: str) -> list[str]:
    channel = client.channel
    return list(dict.fromkeys(channel._q_for_pri(f"gpu.{pool}", p) for p in range(10)))


def job_of(raw) -> str:
    import base64

    message = json.loads(raw)
    return json.loads(base64.b64decode(message["body"]))[0][0]


def messages(client) -> Counter:
    """How many run messages each job has waiting in the gpu.a100 and gpu.l4 lists."""
    count = Counter()
    for pool in ("a100", "l4"):
        for key in queue_keys(client, pool):
            for raw in client.lrange(key, 0, -1):
                count[job_of(raw)] += 1
    return count


def delete_messages(client, job_ids) -> None:
    """The broker loses these jobs' messages (as Redis without persistence does)."""
    wanted = {str(j) for j in job_ids}
    for pool in ("a100", "l4"):
        for key in queue_keys(client, pool):
            for raw in client.lrange(key, 0, -1):
                if job_of(raw) in wanted:
                    client.lrem(key, 1, raw)


def take_unacked(client, job_id, *, taken_ago_s: float, eta=None) -> str:
    """A worker takes the job's message (out of its list, into kombu's unacked hash) and
    neither runs nor acknowledges it — e.g. it was SIGKILLed right after, or it holds it until
    its `eta` (a countdown)."""
    for pool in ("a100", "l4"):
        for key in queue_keys(client, pool):
            for raw in client.lrange(key, 0, -1):
                if job_of(raw) == str(job_id):
                    client.lrem(key, 1, raw)
                    message = json.loads(raw)
                    if eta is not None:
                        message["headers"]["eta"] = eta.isoformat()
                    tag = message["properties"]["delivery_tag"]
                    info = message["properties"]["delivery_info"]
                    client.hset(
                        client.channel.unacked_key,
                        tag,
                        json.dumps([message, info["exchange"], info["routing_key"]]),
                    )
                    client.zadd(client.channel.unacked_index_key, {tag: time.time() - taken_ago_s})
                    client.added.append(tag)
                    return tag
    raise AssertionError(f"no message for {job_id}")


def submit_many(django_capture_on_commit_callbacks, n_per_pool: int = 30) -> list[Job]:
    """n_per_pool jobs on each of two pools, studio / starter / creator in turn, each published
    by its submission (on commit) with its priority."""
    a100 = make_ai_model("sdxl", pool=make_pool("a100"))
    l4 = make_ai_model("flux", pool=make_pool("l4", gpu_type="L4", rate="0.80"))
    orgs = [make_org(plan=plan) for plan in ("studio", "starter", "creator")]
    jobs = []
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(n_per_pool):
            for model in (a100, l4):
                job, _ = services.generation_submit(
                    organization=orgs[i % 3], model_slug=model.slug, params={"prompt": f"p{i}"}
                )
                jobs.append(job)
    return jobs


def later(seconds: float = REQUEUE_AFTER_S + 1):
    return timezone.now() + timedelta(seconds=seconds)


def test_only_the_lost_messages_are_published_again_and_repeated_runs_do_not_amplify(
    django_capture_on_commit_callbacks, redis
):
    jobs = submit_many(django_capture_on_commit_callbacks)
    n = len(jobs)
    assert messages(redis) == Counter({str(j.pk): 1 for j in jobs})
    assert set(Job.objects.values_list("publish_count", flat=True)) == {1}
    lost = jobs[::4]  # K = 15 of 60, both pools, every tier
    delete_messages(redis, [j.pk for j in lost])
    assert sum(messages(redis).values()) == n - len(lost)

    # Not before GENERATIONS_REQUEUE_AFTER_S: a queue may just be long.
    assert services.jobs_reap()["requeued"] == 0
    result = services.jobs_reap(now=later())
    assert (result["requeued"], result["present"], result["checked"]) == (
        len(lost),
        n - len(lost),
        n,
    )
    # every job has exactly one message again: the lost ones got theirs, no one a second
    assert messages(redis) == Counter({str(j.pk): 1 for j in jobs})
    counts = dict(Job.objects.values_list("pk", "publish_count"))
    assert {pk for pk, c in counts.items() if c == 2} == {j.pk for j in lost}

    # Later runs, however long the jobs keep waiting, publish nothing more.
    for minutes in (3, 5, 10, 30):
        assert services.jobs_reap(now=later(minutes * 60))["requeued"] == 0
    assert sum(messages(redis).values()) == n
    assert sum(counts.values()) == n + len(lost)


def test_at_most_the_configured_number_per_run_highest_priority_then_longest_waiting_first(
    django_capture_on_commit_callbacks, redis, settings
):
    settings.GENERATIONS_REAPER_REPUBLISH_MAX = 4
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=6)
    lost = [j for j in jobs if j.priority in (1, 5)]  # studio and starter: 8 jobs
    delete_messages(redis, [j.pk for j in lost])
    before = set(messages(redis))

    assert services.jobs_reap(now=later())["requeued"] == 4
    first = set(messages(redis)) - before
    studio = sorted((j for j in lost if j.priority == 1), key=lambda j: j.created_at)
    assert first == {str(j.pk) for j in studio}  # the 4 studio jobs before any starter one
    assert services.jobs_reap(now=later(REQUEUE_AFTER_S + 31))["requeued"] == 4
    assert services.jobs_reap(now=later(REQUEUE_AFTER_S + 61))["requeued"] == 0
    assert messages(redis) == Counter({str(j.pk): 1 for j in jobs})


def test_a_message_a_dead_worker_took_is_lost_one_a_live_worker_took_is_not(
    django_capture_on_commit_callbacks, redis
):
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=2)
    dead, live, waiting = jobs[0], jobs[1], jobs[2]
    dead_tag = take_unacked(redis, dead.pk, taken_ago_s=REQUEUE_AFTER_S * 10)
    take_unacked(redis, live.pk, taken_ago_s=1)
    # taken long ago, but its countdown runs for another 10 minutes: its worker holds it
    take_unacked(
        redis,
        waiting.pk,
        taken_ago_s=REQUEUE_AFTER_S * 10,
        eta=timezone.now() + timedelta(minutes=10),
    )
    Job.objects.update(published_at=timezone.now() - timedelta(hours=1))

    now = timezone.now()
    result = services.jobs_reap(now=now)
    assert result["requeued"] == 1
    assert messages(redis)[str(dead.pk)] == 1  # published again
    assert str(live.pk) not in messages(redis)  # its worker has it
    assert str(waiting.pk) not in messages(redis)
    # the dead worker's copy is gone, so kombu won't put it back as a second one in an hour
    assert not redis.hexists(redis.channel.unacked_key, dead_tag)
    assert services.jobs_reap(now=now + timedelta(seconds=1))["requeued"] == 0


def test_a_failed_publish_is_published_again_at_the_next_run(django_capture_on_commit_callbacks):
    make_ai_model(credits="2")
    org = make_org(plan="studio")
    real_url = app.conf.broker_url
    point_broker_at("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        with django_capture_on_commit_callbacks(execute=True):
            job, _ = services.generation_submit(
                organization=org, model_slug="sdxl", params={"prompt": "x"}
            )
        job.refresh_from_db()
        assert (job.status, job.published_at, job.publish_count) == (JobStatus.QUEUED, None, 0)
        # the broker still away: the reaper can't read it and publishes nothing, without failing
        assert services.jobs_reap(now=later(10))["requeued"] == 0
    finally:
        point_broker_at(real_url)
    # back: at its next run (not GENERATIONS_REQUEUE_AFTER_S later)
    assert services.jobs_reap(now=later(10))["requeued"] == 1
    job.refresh_from_db()
    assert job.publish_count == 1 and job.published_at is not None


def test_a_queue_too_long_to_read_whole_is_left_alone(
    django_capture_on_commit_callbacks, redis, settings
):
    jobs = submit_many(django_capture_on_commit_callbacks, n_per_pool=3)
    delete_messages(redis, [jobs[0].pk])
    settings.GENERATIONS_REAPER_SCAN_MAX = 2  # can't tell what is lost: publish nothing
    assert services.jobs_reap(now=later())["requeued"] == 0
    settings.GENERATIONS_REAPER_SCAN_MAX = 1000
    assert services.jobs_reap(now=later())["requeued"] == 1
