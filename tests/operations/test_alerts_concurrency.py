"""Two evaluations at once (two beat runs overlapping) against PostgreSQL: one opens the alert
and emails staff, the other finds it open — never two open alerts for one (rule, subject)."""

from __future__ import annotations

import importlib
import threading
import time
from datetime import UTC, datetime

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import connection, transaction

from accounts.models import User
from operations.alerts import services
from operations.models import Alert, AlertState
from tests.factories import make_pool
from tests.operations.test_alerts import queue

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def eager_celery():
    from config.celery_app import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def rules():
    """A transactional test may start from a flushed database: seed the rules again."""
    importlib.import_module("operations.migrations.0002_default_alert_rules").create_rules(
        django_apps, None
    )


def _at_once(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # reported by the assertion below
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("runs", [2, 4])
def test_concurrent_evaluations_open_one_alert_and_send_one_email(runs):
    User.objects.create_user(email="ops@example.com", password="x", is_staff=True)
    queue(make_pool("a100"), 40)
    mail.outbox = []

    summaries = _at_once(runs, lambda: services.alerts_evaluate(now=NOW))

    assert not [s for s in summaries if isinstance(s, BaseException)], summaries
    assert sorted(len(s.opened) for s in summaries) == [0] * (runs - 1) + [1]
    assert sum(len(s.unchanged) for s in summaries) == runs - 1
    assert Alert.objects.filter(state=AlertState.OPEN).count() == 1
    assert [m.subject for m in mail.outbox] == ["[critical] Pool a100: 40 jobs queued"]


def _someone_waits_for_a_lock(timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


def test_an_evaluation_waits_for_the_one_in_progress_then_finds_its_alert_open():
    """The first evaluation has opened the alert but not committed yet when the second starts:
    the second waits for it (rule lock), then only touches that alert."""
    User.objects.create_user(email="ops@example.com", password="x", is_staff=True)
    queue(make_pool("a100"), 40)
    mail.outbox = []
    first_evaluated, commit_first = threading.Event(), threading.Event()
    results: dict = {}

    def first() -> None:
        try:
            with transaction.atomic():
                results["first"] = services.alerts_evaluate(now=NOW)
                first_evaluated.set()
                commit_first.wait(30)
        except BaseException as exc:
            results["first"] = exc
        finally:
            first_evaluated.set()
            connection.close()

    def second() -> None:
        try:
            first_evaluated.wait(30)
            results["second"] = services.alerts_evaluate(now=NOW)
        except BaseException as exc:
            results["second"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_evaluated.wait(30)
    waited = _someone_waits_for_a_lock()
    commit_first.set()
    for t in threads:
        t.join(60)

    assert waited, "the second evaluation did not wait for the first"
    assert len(results["first"].opened) == 1, results
    assert results["second"].unchanged == results["first"].opened, results
    assert Alert.objects.filter(state=AlertState.OPEN).count() == 1
    assert [m.subject for m in mail.outbox] == ["[critical] Pool a100: 40 jobs queued"]
