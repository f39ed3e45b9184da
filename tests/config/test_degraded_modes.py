"""Degraded modes of the web process (issue 13, "Degrade, don't fail"): with Redis away the
rate limits fall back to a bounded in-process limiter (config/api/throttling.py), the login and
sign-up limits step aside, and /healthz says which part is down. A real Redis of the test's own
(port 6391, tests/redis_outage.py) is stopped; nothing about Redis or PostgreSQL is mocked.
Submissions through the API with Redis down: tests/generations/test_degraded.py."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.core import mail
from django.db import connection
from django.urls import reverse

from config.api import throttling
from tests.factories import make_org
from tests.redis_outage import outage_fixture  # noqa: F401 - the `outage` fixture

NOW = 1_800_000_030.25
PASSWORD = "correct-horse-battery"


# --- The in-process limiter -------------------------------------------------------------------


def test_local_limiter_allows_the_limit_at_once_then_one_more_per_refill():
    limiter = throttling.LocalLimiter()
    results = [limiter.hit("k", 3, now=NOW) for _ in range(4)]
    assert [allowed for allowed, _ in results] == [True, True, True, False]
    assert results[-1][1] == 20  # 3 per minute: the next token in 20 s
    assert limiter.hit("k", 3, now=NOW + 19)[0] is False
    assert limiter.hit("k", 3, now=NOW + 20)[0] is True
    assert limiter.hit("k", 3, now=NOW + 20)[0] is False


def test_local_limiter_never_holds_more_than_its_bound_and_drops_the_least_recent():
    limiter = throttling.LocalLimiter(max_keys=3)
    for name in ("a", "b", "c"):
        assert limiter.hit(name, 1, now=NOW)[0]
    limiter.hit("a", 1, now=NOW)  # refused, but "a" is now the most recent
    limiter.hit("d", 1, now=NOW)  # a 4th bucket pushes out "b", the least recent
    assert len(limiter) == 3
    assert limiter.hit("a", 1, now=NOW)[0] is False  # kept, still empty
    assert limiter.hit("b", 1, now=NOW)[0] is True  # dropped: came back full


def test_local_limiter_bound_is_ten_thousand_keys():
    limiter = throttling.LocalLimiter()
    for i in range(10_050):
        limiter.hit(f"key:{i}", 5, now=NOW)
    assert limiter.max_keys == throttling.LOCAL_MAX_KEYS == 10_000
    assert len(limiter) == 10_000


def test_local_limiter_refuses_everything_at_a_zero_limit():
    assert throttling.LocalLimiter().hit("k", 0, now=NOW) == (False, throttling.WINDOW_S)


def test_concurrent_local_hits_never_exceed_the_limit():
    limiter = throttling.LocalLimiter()
    start = threading.Barrier(8)

    def worker() -> list[bool]:
        start.wait()
        return [limiter.hit("k", 50, now=NOW)[0] for _ in range(10)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [ok for f in [pool.submit(worker) for _ in range(8)] for ok in f.result()]
    assert outcomes.count(True) == 50


# --- hit() with Redis away --------------------------------------------------------------------


def test_hit_falls_back_to_the_local_limiter_with_one_warning_when_redis_is_down(outage, caplog):
    outage.stop()
    caplog.set_level(logging.INFO, logger="config.api.throttling")
    bucket = f"test:{uuid.uuid4()}"

    results = [throttling.hit(bucket, 2, now=NOW) for _ in range(3)]

    assert [allowed for allowed, _ in results] == [True, True, False]
    assert results[-1][1] >= 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_hit_asks_redis_again_after_the_retry_delay_and_counts_there(outage, monkeypatch, caplog):
    monkeypatch.setattr(throttling, "REDIS_RETRY_S", 0.2)
    outage.stop()
    bucket = f"test:{uuid.uuid4()}"
    throttling.hit(bucket, 5, now=NOW)
    assert throttling.redis_breaker.skip()  # for REDIS_RETRY_S, Redis is not asked

    outage.start()
    time.sleep(0.25)
    caplog.set_level(logging.INFO, logger="config.api.throttling")
    assert throttling.hit(bucket, 1, now=NOW)[0] is True  # Redis's own count: 1
    assert throttling.hit(bucket, 1, now=NOW)[0] is False  # 2 > 1, counted in Redis
    assert not throttling.redis_breaker.down
    assert "Redis answers again" in caplog.text


def test_the_old_redis_counter_raised_with_redis_down(outage):
    """Before issue 13 `hit` was the bare Redis counter: with Redis away it raised, and every
    API request answered 500. The counter still raises (its callers guard it)."""
    outage.stop()
    with pytest.raises(redis.ConnectionError):
        throttling.counter_incr("ratelimit:old", timeout=65)
    assert throttling.hit("ratelimit-new", 5, now=NOW)[0] is True


# --- Login and sign-up step aside -------------------------------------------------------------


@pytest.mark.django_db
def test_login_still_works_with_redis_down_and_its_throttle_steps_aside(client, outage):
    user = make_org(name="Acme").memberships.get().user
    outage.stop()
    for _ in range(6):  # past the 5 failures that would lock the account
        wrong = client.post(reverse("login"), {"username": user.email, "password": "wrong"})
        assert wrong.status_code == 200
    right = client.post(reverse("login"), {"username": user.email, "password": PASSWORD})
    assert right.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.django_db
def test_signup_still_emails_its_link_with_redis_down(client, outage):
    outage.stop()
    data = {"email": "ada@example.com", "name": "Ada", "organization_name": "Engines"}
    response = client.post(reverse("signup"), data)
    assert response.status_code == 302
    assert response["Location"] == reverse("signup_sent")
    assert mail.outbox[-1].to == ["ada@example.com"]


# --- /healthz --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_ok_when_everything_answers(client, outage):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
    }


@pytest.mark.django_db
def test_healthz_says_degraded_with_200_when_only_redis_is_down(client, outage):
    outage.stop()
    response = client.get("/healthz")
    assert response.status_code == 200  # stay in rotation: submissions are still accepted
    assert response.json() == {
        "status": "degraded",
        "checks": {"database": "ok", "redis": "down", "broker": "down"},
    }
    outage.start()
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_when_the_database_is_down(client):
    settings_dict = connection.settings_dict
    saved = {k: settings_dict[k] for k in ("HOST", "PORT")}
    connection.close()
    settings_dict.update(HOST="127.0.0.1", PORT="1")  # nothing listens there
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        settings_dict.update(saved)  # back before the test's own teardown queries
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["checks"]["database"] == "down"
    assert body["checks"]["redis"] == "ok"
