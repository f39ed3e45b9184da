"""Brute-force protection of the login forms (`/login/` and `/admin/login/`).

Failed logins are counted in Redis (the cache, shared by every web process) per account (the
email typed, whether or not such an account exists, so a lock says nothing about it) and per
client address, each within `LOGIN_FAILURE_WINDOW_S` from its first failure. The
`LOGIN_MAX_FAILURES_PER_ACCOUNT`-th failure for an email locks that email, the
`LOGIN_MAX_FAILURES_PER_ADDRESS`-th failure from an address locks that address, for
`LOGIN_LOCKOUT_S` seconds: while locked, logins are refused before the password is checked
(so guessing goes no further) with "Too many attempts; try again in N minutes", HTTP 429 and
`Retry-After`. A successful login clears its account's count (not its address's: a caller with
one good account can't reset their address to guess at others).

`accounts.backends.ThrottledModelBackend` calls these around the password check, and
`accounts.middleware.LoginThrottleMiddleware` turns the refusal into a 429. Every key expires
by itself, so nothing an anonymous caller sends outlives the window. With Redis unreachable
the throttle steps aside (logged): people can still log in.
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

from config.api.throttling import counter_incr, fail_open

_PREFIX = "login-throttle"


def _ident(value: str) -> str:
    return hashlib.sha256(value.strip().lower().encode("utf-8", "replace")).hexdigest()[:32]


def _keys(scope: str, value: str) -> tuple[str, str]:
    ident = _ident(value)
    return f"{_PREFIX}:fail:{scope}:{ident}", f"{_PREFIX}:lock:{scope}:{ident}"


def _scopes(*, email: str, address: str) -> list[tuple[str, str, int]]:
    scopes = [("address", address, settings.LOGIN_MAX_FAILURES_PER_ADDRESS)]
    if email:
        scopes.insert(0, ("account", email, settings.LOGIN_MAX_FAILURES_PER_ACCOUNT))
    return scopes


@fail_open(0)
def login_lock_remaining(*, email: str, address: str, now: float | None = None) -> int:
    """Seconds until this email and this address may try again (0: they may now)."""
    now = time.time() if now is None else now
    scopes = _scopes(email=email, address=address)
    lock_keys = [_keys(scope, value)[1] for scope, value, _ in scopes]
    until = max((float(v) for v in cache.get_many(lock_keys).values()), default=0.0)
    return max(0, math.ceil(until - now))


@fail_open(0)
def login_failure_record(*, email: str, address: str, now: float | None = None) -> int:
    """Count one failed login. Returns the seconds of the lock it started (0: none)."""
    now = time.time() if now is None else now
    window_s, lockout_s = settings.LOGIN_FAILURE_WINDOW_S, settings.LOGIN_LOCKOUT_S
    locked_for = 0
    for scope, value, limit in _scopes(email=email, address=address):
        fail_key, lock_key = _keys(scope, value)
        if counter_incr(fail_key, timeout=window_s) >= limit:
            cache.set(lock_key, now + lockout_s, timeout=lockout_s)
            cache.delete(fail_key)  # counting starts afresh when the lock ends
            locked_for = lockout_s
    return locked_for


@fail_open(None)
def login_success_record(*, email: str) -> None:
    """A successful login clears its account's failures (its address's stay counted)."""
    cache.delete(_keys("account", email)[0])


def login_throttle_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"Too many attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}."
