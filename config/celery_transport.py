"""kombu's Redis transport with one fix: a worker survives Redis restarting under it.

The bug (kombu 5.7.0, celery 5.7.0, redis-py 8.1.0; reproduced by
tests/config/test_celery_transport.py): when Redis goes away, Celery's consumer calls
`connection.collect()` and then `connection.close()` on the lost connection. `collect()` closes
the channels, but a channel whose close raises a connection error (the pub/sub channel of
remote control, or a channel waiting on BRPOP) stops it half-way, and kombu then drops the
transport's reference to its Connection (`transport.client = None`) anyway. The task
channel, not yet closed, is closed again by `close()`: it puts its unacknowledged messages (a
task running at that moment, with acks_late) back, which needs a new Redis connection pool,
whose parameters are read from `transport.client` — None: `AttributeError: 'NoneType' object
has no attribute 'hostname'` in `Channel._connparams`. Not a connection error, so it escapes
Celery's reconnect logic: "Unrecoverable error", the consumer is gone, and the worker either
exits or (depending on what else is stopping) lingers consuming nothing. Acknowledging that
running task when it ends fails the same way.

The fix: each channel remembers the Connection it was opened with and, when kombu has dropped
it, gives it back to its transport before reading the parameters. Closing then restores the
unacknowledged messages if Redis answers, or raises a connection error that kombu and Celery
already handle (ignore, reconnect) if it doesn't; the ack of a task that ends later reaches
the Redis that is back. Used for `redis://` brokers (CELERY_BROKER_TRANSPORT, settings/base.py);
drop it once kombu's `Connection.collect()` stops dropping the client of a half-closed
transport.

And one saving (issue 16): kombu builds a new `redis.Redis` client object for every publish
(`Channel.conn_or_acquire`: each LPUSH), about a quarter of a publish's CPU (the client copies
some 170 response callbacks). The channel keeps the one it built and reuses it while its
connection pool is the same (a new pool after a reconnect gets a new client). The TCP
connections were already pooled; a client holds no connection of its own between commands,
so errors (a broker that is down) surface exactly as before.
"""

from __future__ import annotations

from contextlib import contextmanager

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def __init__(self, connection, **kwargs):
        # The kombu Connection (URL, credentials, options) this channel's transport serves.
        self._opened_with = connection.client
        super().__init__(connection, **kwargs)

    def _connparams(self, asynchronous: bool = False) -> dict:
        transport = self.connection
        if transport is not None and transport.client is None and self._opened_with is not None:
            transport.client = self._opened_with
        return super()._connparams(asynchronous=asynchronous)

    _reused: tuple | None = None  # (the connection pool, the client built on it)

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        pool = self.pool
        reused = self._reused
        if reused is None or reused[0] is not pool:
            reused = self._reused = (pool, self._create_client())
        yield reused[1]


class Transport(kombu_redis.Transport):
    Channel = Channel
