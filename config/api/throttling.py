"""Per-API-key rate limit from the organization's plan, counted in Redis.

A fixed one-minute window: `SET key 0 EX 60 NX` then `INCR` (both atomic in Redis), so any
number of web processes share one count per key and minute. Browser sessions get
API_SESSION_RATE_LIMIT_PER_MIN per user.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from config.api.permissions import request_api_key
from config.errors import RateLimited

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


def plan_rate_limit(organization) -> int | None:
    plan = getattr(getattr(organization, "subscription", None), "plan", None)
    return plan.api_rate_limit_per_min if plan is not None else None


class APIKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        key = request_api_key(request)
        if key is not None:
            limit = plan_rate_limit(key.organization)
            bucket = f"key:{key.pk}"
        elif request.user is not None and request.user.is_authenticated:
            limit = settings.API_SESSION_RATE_LIMIT_PER_MIN
            bucket = f"user:{request.user.pk}"
        else:
            return True
        if limit is None:
            return True
        allowed, reset = hit(bucket, limit)
        if not allowed:
            raise RateLimited(
                f"Rate limit of {limit} requests per minute exceeded. Retry in {reset} s.",
                headers={"Retry-After": str(reset)},
                limit=limit,
            )
        return True
