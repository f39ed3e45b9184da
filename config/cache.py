"""The Redis client under the Django cache, for the few hot paths that talk to Redis directly
(one round trip where the cache API would take two: the rate-limit counter, the API key
cache).

Django's RedisCache builds a new `redis.Redis` object for every cache call (some 170 response
callbacks copied each time: ~0.3 ms of CPU, twice per API request). `cache_redis()` returns one
client per connection pool instead — the same pool, sockets and options (timeouts) the cache
uses, so a Redis outage looks the same (`redis.RedisError`, `OSError`). Keys go through
`cache.make_and_validate_key`, so they carry the cache's KEY_PREFIX and `cache.clear()`
drops them like any other entry.
"""

from __future__ import annotations

from django.core.cache import cache

# id(connection pool) → client. Django's caches are per thread, each with its own pool(s):
# at most one entry per thread and cache server.
_clients: dict[int, object] = {}


def cache_redis(*, write: bool = True):
    """A `redis.Redis` on the default cache's connection pool, or None when the cache is not
    Django's RedisCache (local development's LocMemCache). Relies on RedisCacheClient's
    `_get_connection_pool` and `_client` (Django 5.2)."""
    backend = getattr(cache, "_cache", None)
    pool_of = getattr(backend, "_get_connection_pool", None)
    if pool_of is None:
        return None
    pool = pool_of(write)
    client = _clients.get(id(pool))
    if client is None:
        client = _clients[id(pool)] = backend._client(connection_pool=pool)
    return client


def cache_key(key: str) -> str:
    """`key` as the cache stores it (KEY_PREFIX, version)."""
    return cache.make_and_validate_key(key)
