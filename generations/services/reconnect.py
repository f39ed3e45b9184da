"""Work that survives losing its database connection: tried again on a fresh one.

A transaction whose connection was terminated (`pg_terminate_backend`, a database restart, a
failover) rolled back whole, so running it again is safe when the work itself is idempotent
(the claim: only a queued job is claimed; the reaper: it re-reads everything). Used by the
worker's claim and the reaper's periodic task; the finish has its own loop (it spools a result
it cannot record, `execution._finish_recorded`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")


def on_fresh_connection(fn: Callable[[], T], *, tries: int, what: str, backoff_s: float) -> T:
    """`fn()`, run again on a fresh connection when it fails with a connection error, up to
    `tries` times in all, waiting `backoff_s`, then twice that, and so on, between tries. The
    last try's error propagates."""
    for n in range(1, tries + 1):
        try:
            return fn()
        except (OperationalError, InterfaceError) as exc:
            connection.close()  # the next try opens a fresh connection
            logger.warning("%s failed (try %s of %s): %s", what, n, tries, exc)
            if n == tries:
                raise
            time.sleep(backoff_s * 2 ** (n - 1))
    raise AssertionError("unreachable")
