"""Transaction helpers shared by the apps' services."""

from __future__ import annotations

import functools

from django.db import transaction


def atomic_joinable(func):
    """`transaction.atomic` around a service, whose callers may pass `savepoint=False` when
    their own transaction is the unit of work (e.g. the generation submission's durable
    block): the service then joins it with no SAVEPOINT/RELEASE round trips, and an error
    it raises marks the caller's transaction for rollback (Django refuses any further query
    in it), so a refusal can never leave half of its writes to be committed."""

    @functools.wraps(func)
    def run(*args, savepoint: bool = True, **kwargs):
        with transaction.atomic(savepoint=savepoint):
            return func(*args, **kwargs)

    return run
