"""Guessing promo codes is throttled like logins (`accounts.login_throttle`): wrong codes are
counted per organization in Redis with the shared counter (`config.api.throttling.
counter_incr`) within `LOGIN_FAILURE_WINDOW_S`; the `MAX_FAILURES`-th locks the organization's
redemptions for `LOGIN_LOCKOUT_S` seconds — even a right code is then refused before it is
looked up, so guessing goes no further. With Redis away the throttle steps aside (logged)."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache

from config.api.throttling import counter_incr, fail_open

MAX_FAILURES = 10
_PREFIX = "promo-throttle"


def _keys(organization_id: int) -> tuple[str, str]:
    return f"{_PREFIX}:fail:{organization_id}", f"{_PREFIX}:lock:{organization_id}"


@fail_open(0)
def promo_lock_remaining(*, organization_id: int, now: float | None = None) -> int:
    """Seconds until this organization may redeem codes again (0: it may now)."""
    now = time.time() if now is None else now
    until = cache.get(_keys(organization_id)[1])
    return max(0, math.ceil(float(until) - now)) if until else 0


@fail_open(0)
def promo_failure_record(*, organization_id: int, now: float | None = None) -> int:
    """Count one wrong code. Returns the seconds of the lock it started (0: none)."""
    now = time.time() if now is None else now
    fail_key, lock_key = _keys(organization_id)
    if counter_incr(fail_key, timeout=settings.LOGIN_FAILURE_WINDOW_S) >= MAX_FAILURES:
        lockout_s = settings.LOGIN_LOCKOUT_S
        cache.set(lock_key, now + lockout_s, timeout=lockout_s)
        cache.delete(fail_key)
        return lockout_s
    return 0
