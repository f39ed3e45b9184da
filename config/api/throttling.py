"""A rate-limit counter in Redis (the cache), shared by every web process.

A fixed one-minute window: `SET key 0 EX 60 NX` then `INCR` (both atomic in Redis), so any
number of web processes share one count per bucket and minute. The API's per-key throttle
(`accounts.api.throttling`) and `credits.services.spend_authorize` count with it.
"""

from __future__ import annotations

import time

from django.core.cache import cache

WINDOW_S = 60


def hit(bucket: str, limit: int, *, now: float | None = None) -> tuple[bool, int]:
    """Count one request in `bucket`'s current window. Returns (allowed, seconds_to_reset)."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    key = f"ratelimit:{bucket}:{window}"
    cache.add(key, 0, timeout=WINDOW_S + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_S + 5)
        count = 1
    reset = max(1, int((window + 1) * WINDOW_S - now + 0.999))
    return count <= limit, reset
