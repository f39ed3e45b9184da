import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit windows and other cached state must not leak between tests."""
    cache.clear()
    yield


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(autouse=True)
def _ledger_invariants(request):
    """After every test that uses the database, the credits ledger and the budgets must be
    exactly consistent (the same checks as `manage.py check_ledger`)."""
    marker = request.node.get_closest_marker("django_db")
    uses_db = marker is not None or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db:
        yield
        return
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction")
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    if request.node.get_closest_marker("ledger_drift_expected"):
        return
    from credits.budgets.selectors import budgets_reconcile
    from credits.selectors import ledger_drift

    drifts = ledger_drift()
    assert not drifts, "ledger drift after test:\n" + "\n".join(map(str, drifts))
    # Budgets agree with their holds' reservations (credits.budgets).
    mismatches = budgets_reconcile()
    assert not mismatches, "budget drift after test:\n" + "\n".join(map(str, mismatches))


@pytest.fixture
def redis_sends(monkeypatch) -> list:
    """What this process writes to Redis connections from now on, one entry per write (a
    command, or a pipeline sent in one write): the round trips. Clear it after a warm-up."""
    from redis.connection import AbstractConnection

    sends: list = []
    original = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sends
