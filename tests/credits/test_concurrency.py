"""Real threads against PostgreSQL: no overspend, one winner per hold, one effect per key."""

import threading
from collections import Counter
from decimal import Decimal as D

import pytest
from django.db import close_old_connections, connection

from config.errors import InsufficientCredits, ServiceError
from credits import ledger
from credits.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from tests.factories import make_account

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 32


def run_concurrently(n: int, fn) -> list:
    """Run fn(i) in n threads released together; return each result or exception."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # collected and asserted on by the test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    close_old_connections()
    return results


def outcome(results) -> Counter:
    return Counter(type(r).__name__ for r in results)


@pytest.mark.parametrize(("balance", "price"), [(D(100), D(7)), (D("10.5"), D("0.75"))])
def test_concurrent_spenders_never_overspend_a_hard_stop_account(balance, price):
    account = make_account(plan="free", credits=balance)
    results = run_concurrently(
        THREADS, lambda i: ledger.hold_create(account=account, amount=price, key=f"job-{i}")
    )
    succeeded = [r for r in results if isinstance(r, CreditHold)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    expected = min(THREADS, int(balance // price))
    assert len(succeeded) == expected, outcome(results)
    assert len(refused) == THREADS - expected, outcome(results)
    account = CreditAccount.objects.get(pk=account.pk)
    assert account.available >= 0
    assert account.held == expected * price


def test_concurrent_spenders_never_pass_the_overage_cap():
    account = make_account(plan="starter", credits="50")  # overage cap 500 → 550 spendable
    results = run_concurrently(
        THREADS,
        lambda i: ledger.hold_capture(
            hold=ledger.hold_create(account=account, amount="40", key=f"job-{i}")
        ),
    )
    succeeded = [r for r in results if isinstance(r, CreditHold)]
    assert len(succeeded) == int(D(550) // D(40)), outcome(results)  # 13
    assert all(isinstance(r, CreditHold | InsufficientCredits) for r in results), outcome(results)
    account = CreditAccount.objects.get(pk=account.pk)
    assert account.balance == D(50) - 13 * D(40)
    assert account.balance >= -account.overage_limit


def test_capture_and_release_racing_on_one_hold_have_exactly_one_winner():
    account = make_account(credits="1000")
    holds = [ledger.hold_create(account=account, amount="10", key=f"job-{i}") for i in range(8)]

    def race(i: int):
        hold = holds[i // 4]
        if i % 2:
            return ledger.hold_capture(hold=hold)
        return ledger.hold_release(hold=hold, reason="race")

    results = run_concurrently(32, race)
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, ServiceError) for e in errors), errors
    for hold in holds:
        hold.refresh_from_db()
        assert hold.status in (HoldStatus.CAPTURED, HoldStatus.RELEASED)
        resolutions = LedgerEntry.objects.filter(
            hold=hold, kind__in=[EntryKind.CAPTURE, EntryKind.RELEASE]
        ).count()
        assert resolutions == 1
    captured = sum(1 for h in holds if h.status == HoldStatus.CAPTURED)
    account = CreditAccount.objects.get(pk=account.pk)
    assert account.held == 0
    assert account.balance == D(1000) - captured * D(10)


def test_the_same_idempotency_key_used_concurrently_has_one_effect():
    account = make_account(credits="1000")
    holds = run_concurrently(
        16, lambda i: ledger.hold_create(account=account, amount="25", key="same-job")
    )
    assert all(isinstance(h, CreditHold) for h in holds), outcome(holds)
    assert len({h.pk for h in holds}) == 1
    grants = run_concurrently(
        16,
        lambda i: ledger.grant_create(
            account=account, amount="5", source="promo", idempotency_key="promo-x"
        ),
    )
    assert len({g.pk for g in grants if not isinstance(g, Exception)}) == 1, outcome(grants)
    account = CreditAccount.objects.get(pk=account.pk)
    assert account.held == D(25)
    assert account.balance == D(1005)
