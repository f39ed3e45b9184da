"""Redis down, PostgreSQL up: the API still accepts generations (issue 13, "Degrade, don't
fail"). A real Redis of the test's own (port 6391, tests/redis_outage.py) is stopped and
started again; nothing about Redis or PostgreSQL is mocked.

The old bug: `config.api.throttling.hit` called `cache.add`, which raises
`redis.ConnectionError` with Redis away, so every API call during an outage answered 500 —
`test_the_old_throttle_raised_on_every_request_while_redis_was_down` replays that code.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis

from accounts import services as account_services
from accounts.models import Plan
from config.api import throttling
from credits.models import EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import Job, JobStatus
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_ai_model, make_org
from tests.generations.conftest import wait_for
from tests.redis_outage import outage_fixture  # noqa: F401 - the `outage` fixture

pytestmark = [pytest.mark.django_db(transaction=True)]

GENERATIONS = "/api/v1/generations/"


@pytest.fixture
def studio():
    """A studio organization with an API key and an instant model (a100 pool)."""
    org = make_org(slug="acme", plan="studio")
    make_ai_model("sdxl", credits="5")
    key = account_services.api_key_create(organization=org, name="k", actor=None)[1]
    return org, key


def submit(client, key, prompt="a cat", *, idempotency_key=None):
    headers = bearer(key)
    if idempotency_key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    body = {"model": "sdxl", "params": {"prompt": prompt}}
    return client.post(
        GENERATIONS, data=json.dumps(body), content_type="application/json", **headers
    )


def messages_for(outage, job_ids) -> set[str]:
    """The job ids of `job_ids` whose run message waits in the broker on our Redis."""
    raw = b"".join(outage.messages("gpu.a100")).decode(errors="replace")
    return {str(job_id) for job_id in job_ids if str(job_id) in raw}


def test_submissions_are_accepted_with_redis_down_and_published_when_it_returns(
    api_client, studio, outage, settings, caplog
):
    _org, key = studio
    outage.stop()
    caplog.set_level(logging.WARNING)

    started = time.monotonic()
    responses = [submit(api_client, key, f"cat {i}") for i in range(3)]
    responses.append(submit(api_client, key, "dog", idempotency_key="k-1"))
    replay = submit(api_client, key, "dog", idempotency_key="k-1")
    elapsed = time.monotonic() - started

    assert [r.status_code for r in responses] == [202] * 4, [r.content for r in responses]
    assert replay.status_code in (200, 202)
    assert replay.json()["id"] == responses[-1].json()["id"]  # the same job, not a second one
    ids = [r.json()["id"] for r in responses]
    jobs = list(Job.objects.filter(pk__in=ids).select_related("hold"))
    assert len(jobs) == 4
    for job in jobs:
        assert job.status == JobStatus.QUEUED  # accepted: PostgreSQL is the source of truth
        assert job.hold.status == HoldStatus.HELD  # held at the pinned price, not charged
    assert not LedgerEntry.objects.filter(
        hold__in=[j.hold_id for j in jobs], kind=EntryKind.CAPTURE
    ).exists()
    assert elapsed < 15, f"5 requests took {elapsed:.1f} s with Redis down"
    logged = caplog.text
    assert "Redis unreachable" in logged  # the limiter said once that it fell back
    assert "Could not publish job" in logged

    outage.start()  # back, empty (no persistence): none of the messages exist
    assert messages_for(outage, ids) == set()
    settings.GENERATIONS_REQUEUE_AFTER_S = 0  # whatever the reaper's age rule, it is due
    services.jobs_reap()
    assert messages_for(outage, ids) == set(ids)  # published once the broker is back
    assert Job.objects.filter(pk__in=ids, status=JobStatus.QUEUED).count() == 4


def test_the_rate_limit_still_limits_in_the_process_with_redis_down(api_client, studio, outage):
    org, key = studio
    Plan.objects.filter(slug="studio").update(api_rate_limit_per_min=3)
    outage.stop()

    statuses = [submit(api_client, key, f"cat {i}").status_code for i in range(3)]
    refused = submit(api_client, key, "one too many")

    assert statuses == [202, 202, 202]
    body = assert_problem(refused, status=429, code="rate_limited")
    assert (body["limit"], body["limit_value"]) == ("rate_limit", 3)
    assert int(refused["Retry-After"]) >= 1
    assert Job.objects.filter(organization=org).count() == 3  # the refusal wrote nothing


def test_the_shared_redis_limit_is_back_when_redis_answers_again(
    api_client, studio, outage, monkeypatch
):
    _org, key = studio
    Plan.objects.filter(slug="studio").update(api_rate_limit_per_min=2)
    monkeypatch.setattr(throttling, "REDIS_RETRY_S", 0.0)  # ask Redis again at once
    outage.stop()
    assert submit(api_client, key, "during").status_code == 202
    assert throttling.redis_breaker.down

    outage.start()
    throttling.local_limiter.clear()  # from now on only Redis can refuse
    assert [submit(api_client, key, f"after {i}").status_code for i in range(2)] == [202, 202]
    assert not throttling.redis_breaker.down
    assert_problem(submit(api_client, key, "third"), status=429, code="rate_limited")


def _old_hit(bucket: str, limit: int, *, now: float | None = None) -> tuple[bool, int]:
    """`config.api.throttling.hit` before issue 13, verbatim: the Redis counter, unguarded."""
    now = time.time() if now is None else now
    window = int(now // throttling.WINDOW_S)
    count = throttling.counter_incr(f"ratelimit:{bucket}:{window}", timeout=throttling.WINDOW_S + 5)
    reset = max(1, int((window + 1) * throttling.WINDOW_S - now + 0.999))
    return count <= limit, reset


def test_the_old_throttle_raised_on_every_request_while_redis_was_down(
    api_client, studio, outage, monkeypatch, caplog
):
    """The bug the chaos run found: with the old `hit` the API key's throttle raised
    `redis.ConnectionError` — answered `500 server_error` — and nothing was accepted. The same
    request with today's `hit` is accepted."""
    org, key = studio
    outage.stop()
    monkeypatch.setattr("accounts.api.throttling.hit", _old_hit)
    with caplog.at_level(logging.ERROR, logger="config.api.middleware"):
        old = submit(api_client, key)
    assert_problem(old, status=500, code="server_error")
    assert any(
        isinstance(r.exc_info and r.exc_info[1], redis.ConnectionError) for r in caplog.records
    )
    assert not Job.objects.filter(organization=org).exists()

    monkeypatch.setattr("accounts.api.throttling.hit", throttling.hit)
    assert submit(api_client, key).status_code == 202


@pytest.mark.worker
def test_a_job_accepted_while_redis_was_down_runs_once_it_is_back(
    api_client, studio, outage, settings, start_worker
):
    _org, key = studio
    outage.stop()
    response = submit(api_client, key)
    assert response.status_code == 202
    job_id = response.json()["id"]

    outage.start()
    start_worker(
        REDIS_URL=outage.url(0),
        CELERY_BROKER_URL=outage.url(0),
        GENERATIONS_REQUEUE_AFTER_S=0,
    )
    settings.GENERATIONS_REQUEUE_AFTER_S = 0

    def ran() -> bool:
        services.jobs_reap()
        return Job.objects.get(pk=job_id).status == JobStatus.SUCCEEDED

    wait_for(ran, timeout=60, interval=0.5, message="the job to run after Redis came back")
    job = Job.objects.select_related("hold").get(pk=job_id)
    assert job.hold.status == HoldStatus.CAPTURED
    assert LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.CAPTURE).count() == 1
