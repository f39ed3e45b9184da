"""`config.api.throttling.counter_incr` on Redis (issue 16): one Lua script per count (one
command sent, one reply), the same semantics as the SET NX EX + INCR it replaced: the counter
is created with its time to live on first use, counts atomically, is readable by
`cache.get`, and survives a Redis that lost its scripts (restart, `SCRIPT FLUSH`)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import cache

from config.api.throttling import counter_incr
from config.cache import cache_key, cache_redis


@pytest.fixture
def client():
    redis = cache_redis()
    if redis is None:
        pytest.skip("the cache is not Redis")
    return redis


@pytest.fixture
def key():
    name = f"test-counter:{uuid.uuid4().hex}"
    yield name
    cache.delete(name)


def test_the_first_count_creates_the_counter_with_its_ttl_then_counts(client, key):
    assert counter_incr(key, timeout=60) == 1
    assert 0 < client.ttl(cache_key(key)) <= 60
    assert [counter_incr(key, timeout=5) for _ in range(3)] == [2, 3, 4]
    assert client.ttl(cache_key(key)) > 5  # a later count does not reset the window
    assert cache.get(key) == 4


def test_a_count_is_one_command_sent(client, key, redis_sends):
    counter_incr(key, timeout=60)  # the script is loaded
    redis_sends.clear()
    sends = redis_sends
    assert counter_incr(key, timeout=60) == 2
    assert len(sends) == 1  # the pipeline sent MULTI, SET, INCR, EXEC in one write too,
    assert (
        b"EVALSHA"
        in b"".join(  # but Redis parsed and answered four commands
            part if isinstance(part, bytes) else part.tobytes() for part in sends[0]
        ).upper()
    )


def test_a_redis_that_does_not_know_the_script_still_counts(client, key, monkeypatch):
    """As after a restart: EVALSHA answers NOSCRIPT, the script is loaded and run. (Simulated
    with an unknown digest: SCRIPT FLUSH would empty the scripts of everyone on this Redis.)"""
    from config.api import throttling

    real = throttling._COUNTER_INCR.sha
    monkeypatch.setattr(throttling._COUNTER_INCR, "sha", "0" * 40)
    assert counter_incr(key, timeout=60) == 1
    assert throttling._COUNTER_INCR.sha == real  # reloaded: its own digest again
    assert counter_incr(key, timeout=60) == 2


def test_concurrent_counts_are_each_counted_once(client, key):
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: counter_incr(key, timeout=60), range(200)))
    assert sorted(values) == list(range(1, 201))
