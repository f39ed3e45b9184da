"""A rate-limit counter in Redis (the cache), shared by every web process.

A fixed one-minute window: `SET key 0 EX 60 NX` then `INCR` (both atomic in Redis), so any
number of web processes share one count per bucket and minute. The API's per-key throttle
(`accounts.api.throttling`) and `credits.services.spend_authorize` count with it.
"""

from __future__ import annotations

import functools
import logging
import time

from django.core.cache import cache
from redis import RedisError

logger = logging.getLogger(__name__)

WINDOW_S = 60


def fail_open(default):
    """For a limiter that must not take its page down with Redis: when the cache can't be
    reached the call returns `default` (no limit applied) and logs a warning, instead of
    answering 500. PostgreSQL, not Redis, is the source of truth for anything that matters."""

    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (RedisError, OSError) as exc:
                logger.warning("%s: cache unreachable, not limiting (%s)", fn.__qualname__, exc)
                return default

        return guarded

    return wrap


def counter_incr(key: str, *, timeout: int) -> int:
    """Add one to the cache counter `key`, created with `timeout` seconds to live on first use
    (`SET NX` then `INCR`, both atomic in Redis). The one counter every limiter here uses."""
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=timeout)
        return 1


def hit(bucket: str, limit: int, *, now: float | None = None) -> tuple[bool, int]:
    """Count one request in `bucket`'s current window. Returns (allowed, seconds_to_reset)."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    count = counter_incr(f"ratelimit:{bucket}:{window}", timeout=WINDOW_S + 5)
    reset = max(1, int((window + 1) * WINDOW_S - now + 0.999))
    return count <= limit, reset
