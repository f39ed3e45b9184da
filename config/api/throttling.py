"""A rate-limit counter in Redis (the cache), shared by every web process — and what limits
when Redis is away.

A fixed one-minute window: `SET key 0 EX 60 NX` then `INCR` (one MULTI/EXEC round trip), so any
number of web processes share one count per bucket and minute. The API's per-key throttle
(`accounts.api.throttling`) counts with `hit`; the login and sign-up limits count with
`counter_incr` and fail open (`fail_open`).

Redis down must never answer 500 (issue 13: `cache.add` raised `redis.ConnectionError` on
every API call during an outage). `hit` then falls back to `LocalLimiter`: a token bucket per
bucket name in this process (capacity `limit`, refilled at `limit` per minute, at most
`LOCAL_MAX_KEYS` buckets, least recently used dropped first). Each web process limits on its
own, so while Redis is away a key may get up to `limit` × processes per minute — bounded, and
PostgreSQL (credits, daily cap, concurrent jobs) still decides everything that costs money.
After a failure Redis is asked again only every `REDIS_RETRY_S` seconds, so an outage costs a
request nothing more than the in-process check; one warning when Redis goes away, one info
line when it answers again (docs/reliability.md, "Degraded modes").
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections import OrderedDict

from django.core.cache import cache
from redis import RedisError
from redis.commands.core import Script

from config.cache import cache_key, cache_redis

logger = logging.getLogger(__name__)

WINDOW_S = 60
# The in-process fallback's bound: buckets kept per process (≈ 230 bytes each, 2.3 MB).
LOCAL_MAX_KEYS = 10_000
# After Redis failed, `hit` uses the fallback for this long before asking Redis again.
REDIS_RETRY_S = 5.0

# What an unreachable or failing Redis raises through Django's cache (redis-py's errors, or
# the socket's own).
CACHE_ERRORS = (RedisError, OSError)


def fail_open(default):
    """For a limiter that must not take its page down with Redis: when the cache can't be
    reached the call returns `default` (no limit applied) and logs a warning, instead of
    answering 500. PostgreSQL, not Redis, is the source of truth for anything that matters."""

    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except CACHE_ERRORS as exc:
                logger.warning("%s: cache unreachable, not limiting (%s)", fn.__qualname__, exc)
                return default

        return guarded

    return wrap


# SET NX EX then INCR, atomically (a script runs alone); bytes, so no client is needed to hash it.
_COUNTER_INCR = Script(
    None,
    b"redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX') return redis.call('INCR', KEYS[1])",
)


def counter_incr(key: str, *, timeout: int) -> int:
    """Add one to the cache counter `key`, created with `timeout` seconds to live on first use
    (`SET NX EX` then `INCR`, both atomic in Redis). The one counter every limiter here uses.

    On Redis the two commands run in one Lua script (`EVALSHA`, loaded on first use or after a
    restart): one round trip and one reply per count — a MULTI/EXEC pipeline sent four commands
    and parsed four replies, 20–40 µs more CPU per request (issue 16). The value is a plain
    integer, as Django's RedisCache stores ints, so `cache.get` reads it."""
    client = cache_redis()
    if client is not None:
        return int(_COUNTER_INCR(keys=[cache_key(key)], args=[timeout], client=client))
    cache.add(key, 0, timeout=timeout)  # another cache backend (local development)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=timeout)
        return 1


class LocalLimiter:
    """Token buckets in this process, one per bucket name: `limit` tokens at most, refilled
    at `limit` per `WINDOW_S`; a request takes one. At most `max_keys` buckets (an LRU): a
    dropped bucket comes back full, which lets that caller at most one more `limit`."""

    def __init__(self, max_keys: int = LOCAL_MAX_KEYS):
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def hit(self, bucket: str, limit: int, *, now: float) -> tuple[bool, int]:
        """Take a token from `bucket`. Returns (allowed, seconds until the next token when
        refused / until the bucket is full again when allowed)."""
        if limit <= 0:
            return False, WINDOW_S
        rate = limit / WINDOW_S
        with self._lock:
            tokens, at = self._buckets.pop(bucket, (float(limit), now))
            tokens = min(float(limit), tokens + max(0.0, now - at) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[bucket] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        missing = (limit - tokens) if allowed else (1.0 - tokens)
        return allowed, max(1, math.ceil(missing / rate - 1e-9))


class _RedisBreaker:
    """Whether `hit` asks Redis now: not for `REDIS_RETRY_S` after it failed (per process)."""

    def __init__(self):
        self._down_until: float | None = None
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self._down_until is not None

    def skip(self) -> bool:
        until = self._down_until
        return until is not None and time.monotonic() < until

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = time.monotonic() + REDIS_RETRY_S
        if not was_down:
            logger.warning(
                "API rate limit: Redis unreachable (%s); limiting in this process "
                "(token bucket per key, at most %d keys) until it answers",
                exc.__class__.__name__,
                LOCAL_MAX_KEYS,
            )

    def answered(self) -> None:
        if self._down_until is None:
            return
        with self._lock:
            self._down_until = None
        logger.info("API rate limit: Redis answers again; the shared limit is back")

    def reset(self) -> None:
        with self._lock:
            self._down_until = None


local_limiter = LocalLimiter()
redis_breaker = _RedisBreaker()


def hit(bucket: str, limit: int, *, now: float | None = None) -> tuple[bool, int]:
    """Count one request in `bucket`'s current window. Returns (allowed, seconds_to_reset).
    Redis unreachable: the in-process token bucket decides instead (never raises for it)."""
    now = time.time() if now is None else now
    if not redis_breaker.skip():
        window = int(now // WINDOW_S)
        try:
            count = counter_incr(f"ratelimit:{bucket}:{window}", timeout=WINDOW_S + 5)
        except CACHE_ERRORS as exc:
            redis_breaker.failed(exc)
        else:
            redis_breaker.answered()
            reset = max(1, int((window + 1) * WINDOW_S - now + 0.999))
            return count <= limit, reset
    return local_limiter.hit(bucket, limit, now=now)
