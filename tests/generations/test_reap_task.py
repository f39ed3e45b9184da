"""The reaper's periodic task survives losing its database connection (the chaos run's seed 2:
a run whose backend was terminated failed, and lost jobs waited 30 s more for the next)."""

from __future__ import annotations

import pytest
from django.db import connection

from generations import tasks
from generations.services import reconnect
from tests.generations.test_finish_retry import terminate

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reaper_run_whose_connection_is_terminated_runs_again_on_a_fresh_one(monkeypatch):
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    terminate(pid)  # the task's connection is dead before its first statement
    monkeypatch.setattr(reconnect.time, "sleep", lambda s: None)
    result = tasks.reap_jobs()
    assert set(result) >= {"requeued", "checked", "retried_lost", "failed_lost"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid  # it ran on a new connection


def test_a_reaper_run_gives_up_after_its_tries(monkeypatch):
    from django.db import OperationalError

    calls = []

    def lost(**kwargs):
        calls.append(1)
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(tasks.services, "jobs_reap", lost)
    monkeypatch.setattr(reconnect.time, "sleep", lambda s: None)
    with pytest.raises(OperationalError):
        tasks.reap_jobs()
    assert len(calls) == tasks.REAP_TRIES
