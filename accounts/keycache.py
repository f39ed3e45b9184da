"""A short-lived cache of API keys with their organization, subscription and plan (the rate
limit, quotas and plan flags every API request reads), so an API request finds its key with
one Redis round trip instead of a PostgreSQL query.

Entries live in the cache's Redis (config/cache.py) for API_KEY_CACHE_S seconds under the
key's prefix, pickled with a global epoch as their tag; an entry counts only while its tag
equals the epoch, which is read in the same round trip (MGET). Anything that changes what an
entry holds — a key revoked, a plan, subscription or organization saved — bumps the epoch
(`forget_all`), so every cached key is read again from PostgreSQL on its next use: revocation
takes effect on the next request.
The bump happens at once and again when the transaction commits (a request that read the rows
before the commit cannot leave an old copy under the new epoch). Changes are rare (a key
revoked, a plan changed), so dropping every entry is cheaper than tracking which ones.

Only active keys are cached (never a miss: unknown prefixes must not fill the cache), and the
digest is still compared on every request. Redis unreachable: the lookup goes to PostgreSQL
(never an error), and while the rate limiter's breaker says Redis is away
(config/api/throttling.py) it is not asked at all; a bump that fails is logged — entries then
expire within API_KEY_CACHE_S.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time

from django.conf import settings
from django.db import transaction
from redis import RedisError

from accounts.models import APIKey
from config.api.throttling import redis_breaker
from config.cache import cache_key, cache_redis

logger = logging.getLogger(__name__)

EPOCH_KEY = "apikey-cache:epoch"
_CACHE_ERRORS = (RedisError, OSError, pickle.UnpicklingError)
_OFF = object()


def _entry_key(prefix: str) -> str:
    return cache_key(f"apikey-cache:v1:{prefix}")


def cached(*, prefix: str) -> tuple[object, APIKey | None]:
    """(epoch, key): the key cached for `prefix` if its entry is current, else None. The
    epoch goes to `remember` (it tags the entry filled after a miss); `_OFF` when the cache is
    off or unreachable (then nothing is remembered)."""
    client = cache_redis(write=False)
    if client is None or settings.API_KEY_CACHE_S <= 0 or redis_breaker.skip():
        return _OFF, None  # Redis known to be away (the rate limiter's breaker): no wait on it
    try:
        raw, epoch = client.mget([_entry_key(prefix), cache_key(EPOCH_KEY)])
        if raw is not None:
            # Our own Redis, written only by `remember` (Django's cache pickles the same way).
            tag, api_key = pickle.loads(raw)  # noqa: S301
            if tag == epoch:
                return epoch, api_key
    except (RedisError, OSError) as exc:
        redis_breaker.failed(exc)
        return _OFF, None
    except pickle.UnpicklingError:
        return _OFF, None
    return epoch, None


def remember(*, epoch: object, api_key: APIKey) -> None:
    """Cache `api_key` (read from PostgreSQL after `cached` returned `epoch`)."""
    if epoch is _OFF:
        return
    with contextlib.suppress(_CACHE_ERRORS):
        cache_redis().set(
            _entry_key(api_key.prefix),
            pickle.dumps((epoch, api_key), protocol=pickle.HIGHEST_PROTOCOL),
            ex=settings.API_KEY_CACHE_S,
        )


def _bump() -> None:
    """A new epoch: a value no entry has been tagged with (nanoseconds since the epoch)."""
    client = cache_redis()
    if client is None:
        return
    try:
        client.set(cache_key(EPOCH_KEY), str(time.time_ns()))
    except _CACHE_ERRORS as exc:
        logger.warning(
            "API key cache: could not invalidate (%s); cached keys expire within %s s",
            exc.__class__.__name__,
            settings.API_KEY_CACHE_S,
        )


def forget_all() -> None:
    """Invalidate every cached key: now, and again when the current transaction commits."""
    _bump()
    transaction.on_commit(_bump)


def forget_on_save(sender, **kwargs) -> None:
    """post_save/post_delete receiver for the models a cached key carries (accounts/apps.py).
    Saving an APIKey counts too; `api_key_touch` writes with .update(), which sends nothing."""
    forget_all()
