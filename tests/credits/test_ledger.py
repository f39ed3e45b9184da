"""The ledger's rules, one behaviour per test, on PostgreSQL."""

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from config.errors import IdempotencyConflict, InsufficientCredits, ValidationError
from credits import ledger, selectors, services
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditHold,
    EntryAllocation,
    EntryKind,
    HoldStatus,
    LedgerEntry,
)
from credits.selectors import ledger_drift
from tests.factories import account_of, make_account, make_org

pytestmark = pytest.mark.django_db


def _grant(account, amount, *, key, source="purchase", expires_in=None, priority=None):
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    return ledger.grant_create(
        account=account,
        amount=amount,
        source=source,
        idempotency_key=key,
        expires_at=expires_at,
        priority=priority,
    )


def _fresh(account) -> CreditAccount:
    return CreditAccount.objects.get(pk=account.pk)


# --- Grants and plan periods --------------------------------------------------------------------


def test_new_organization_gets_its_plan_credits_expiring_at_period_end():
    org = make_org(plan="creator")
    account = account_of(org)
    grant = CreditGrant.objects.get(account=account)
    assert (grant.source, grant.amount, grant.remaining) == ("plan", D(2000), D(2000))
    assert grant.expires_at == org.subscription.current_period_end
    assert account.balance == D(2000)
    assert account.overage_limit == D(2000)


def test_free_plan_has_no_overage_allowance_and_enterprise_gets_no_grant():
    assert account_of(make_org(plan="free")).overage_limit == 0
    enterprise = account_of(make_org(plan="enterprise"))
    assert enterprise.balance == 0
    assert not CreditGrant.objects.filter(account=enterprise).exists()


def test_grant_replayed_with_same_key_adds_nothing():
    account = make_account(credits=0)
    first = _grant(account, "10", key="promo-1", source="promo")
    again = _grant(account, "10", key="promo-1", source="promo")
    assert first.pk == again.pk
    assert _fresh(account).balance == D(10)


def test_grant_key_reused_for_a_different_amount_is_a_conflict():
    account = make_account(credits=0)
    _grant(account, "10", key="promo-1", source="promo")
    with pytest.raises(IdempotencyConflict):
        _grant(account, "11", key="promo-1", source="promo")
    assert _fresh(account).balance == D(10)


# --- Burn-down order --------------------------------------------------------------------------


def test_holds_burn_lower_priority_then_earliest_expiry_then_oldest():
    account = make_account(credits=0)
    never = _grant(account, "10", key="a", source="purchase")  # priority 40, never expires
    late = _grant(account, "10", key="b", source="plan", expires_in=timedelta(days=20))
    early = _grant(account, "10", key="c", source="plan", expires_in=timedelta(days=2))
    promo = _grant(account, "10", key="d", source="promo", expires_in=timedelta(days=90))
    old_no_expiry = _grant(account, "10", key="e", source="adjustment", priority=40)

    ledger.hold_create(account=account, amount="25", key="job-1")
    remaining = {g.pk: g.remaining for g in CreditGrant.objects.filter(account=account)}
    assert remaining[promo.pk] == 0  # priority 10 first
    assert remaining[early.pk] == 0  # priority 20, earliest expiry
    assert remaining[late.pk] == D(5)  # priority 20, later expiry
    assert remaining[never.pk] == D(10)
    assert remaining[old_no_expiry.pk] == D(10)

    ledger.hold_create(account=account, amount="10", key="job-2")
    remaining = {g.pk: g.remaining for g in CreditGrant.objects.filter(account=account)}
    assert remaining[late.pk] == 0
    assert remaining[never.pk] == D(5)  # priority 40, never expires: the older one first
    assert remaining[old_no_expiry.pk] == D(10)


def test_expired_grants_are_not_drawn():
    account = make_account(credits=0)
    stale = _grant(account, "10", key="a", source="promo", expires_in=timedelta(seconds=1))
    _grant(account, "10", key="b")
    ledger.hold_create(
        account=account, amount="5", key="job", now=timezone.now() + timedelta(seconds=5)
    )
    assert CreditGrant.objects.get(pk=stale.pk).remaining == D(10)


# --- Holds, capture, release -----------------------------------------------------------------


def test_hold_raises_held_and_leaves_balance():
    account = make_account(credits="100")
    ledger.hold_create(account=account, amount="30", key="job")
    account = _fresh(account)
    assert (account.balance, account.held, account.available) == (D(100), D(30), D(70))
    entry = LedgerEntry.objects.get(account=account, kind=EntryKind.HOLD)
    assert (entry.balance_delta, entry.held_delta) == (0, D(30))
    assert (entry.balance_after, entry.held_after) == (D(100), D(30))


def test_capture_charges_once():
    account = make_account(credits="100")
    hold = ledger.hold_create(account=account, amount="30", key="job")
    ledger.hold_capture(hold=hold)
    ledger.hold_capture(hold=hold)  # replay
    account = _fresh(account)
    assert (account.balance, account.held) == (D(70), 0)
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.CAPTURE).count() == 1


def test_partial_capture_releases_the_rest():
    account = make_account(credits="100")
    hold = ledger.hold_create(account=account, amount="30", key="job")
    ledger.hold_capture(hold=hold, amount="12.5")
    account = _fresh(account)
    assert (account.balance, account.held) == (D("87.5"), 0)
    kinds = list(
        LedgerEntry.objects.filter(hold=hold).order_by("sequence").values_list("kind", "amount")
    )
    assert kinds == [("hold", D(30)), ("release", D("17.5")), ("capture", D("12.5"))]
    assert CreditHold.objects.get(pk=hold.pk).captured_amount == D("12.5")


def test_capture_more_than_held_is_refused_and_writes_nothing():
    account = make_account(credits="100")
    hold = ledger.hold_create(account=account, amount="30", key="job")
    before = LedgerEntry.objects.count()
    with pytest.raises(ValidationError):
        ledger.hold_capture(hold=hold, amount="30.001")
    assert LedgerEntry.objects.count() == before
    assert CreditHold.objects.get(pk=hold.pk).status == HoldStatus.HELD


def test_release_gives_back_exactly_what_the_hold_took():
    account = make_account(credits=0)
    a = _grant(account, "7", key="a", source="promo")
    b = _grant(account, "50", key="b")
    hold = ledger.hold_create(account=account, amount="20", key="job")
    assert CreditGrant.objects.get(pk=a.pk).remaining == 0
    ledger.hold_release(hold=hold, reason="backend failed")
    assert CreditGrant.objects.get(pk=a.pk).remaining == D(7)
    assert CreditGrant.objects.get(pk=b.pk).remaining == D(50)
    account = _fresh(account)
    assert (account.balance, account.held) == (D(57), 0)


def test_partial_capture_gives_back_the_unfunded_part_first_then_in_reverse_burn_down():
    account = make_account(plan="starter", credits=0)  # overage allowed down to -500
    promo = _grant(account, "10", key="promo", source="promo")  # priority 10: drawn first
    purchase = _grant(account, "20", key="purchase")  # priority 40: drawn second
    hold = ledger.hold_create(account=account, amount="35", key="job")  # 10 + 20 + 5 unfunded
    assert hold.unfunded == D(5)

    ledger.hold_capture(hold=hold, amount="12")  # 23 go back: 5 unfunded, 18 to the purchase

    release = LedgerEntry.objects.get(hold=hold, kind=EntryKind.RELEASE)
    given = dict(release.allocations.values_list("grant_id", "amount"))
    assert given == {None: D(5), purchase.pk: D(18)}
    assert CreditGrant.objects.get(pk=promo.pk).remaining == 0
    assert CreditGrant.objects.get(pk=purchase.pk).remaining == D(18)
    account = _fresh(account)
    assert (account.balance, account.held) == (D(18), 0)


def test_a_hold_resolves_at_most_once():
    account = make_account(credits="100")
    hold = ledger.hold_create(account=account, amount="30", key="job")
    ledger.hold_release(hold=hold)
    ledger.hold_release(hold=hold)  # replay: no effect
    with pytest.raises(ValidationError):
        ledger.hold_capture(hold=hold)
    assert _fresh(account).balance == D(100)
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.RELEASE).count() == 1


def test_same_hold_key_returns_the_same_hold_and_holds_once():
    account = make_account(credits="100")
    first = ledger.hold_create(account=account, amount="30", key="job-1")
    again = ledger.hold_create(account=account, amount="30", key="job-1")
    assert first.pk == again.pk
    assert _fresh(account).held == D(30)
    with pytest.raises(IdempotencyConflict):
        ledger.hold_create(account=account, amount="31", key="job-1")


def test_credits_returned_to_an_expired_grant_expire_at_once():
    account = make_account(credits=0)
    grant = _grant(account, "10", key="p", source="promo", expires_in=timedelta(hours=1))
    hold = ledger.hold_create(account=account, amount="4", key="job")
    later = timezone.now() + timedelta(hours=2)
    services.grants_expire_due(now=later)  # expires the 6 left
    ledger.hold_release(hold=hold, now=later)  # the 4 come back, and expire too
    grant.refresh_from_db()
    assert grant.remaining == 0
    account = _fresh(account)
    assert (account.balance, account.held) == (0, 0)
    assert LedgerEntry.objects.filter(grant=grant, kind=EntryKind.EXPIRY).count() == 2


def test_stale_holds_are_released_by_the_periodic_sweep_once():
    account = make_account(credits="100")
    now = timezone.now()
    stale = ledger.hold_create(
        account=account, amount="10", key="stuck", expires_at=now + timedelta(minutes=5)
    )
    fresh = ledger.hold_create(
        account=account, amount="10", key="running", expires_at=now + timedelta(hours=5)
    )
    assert services.holds_release_stale(now=now + timedelta(minutes=10)) == 1
    assert services.holds_release_stale(now=now + timedelta(minutes=10)) == 0
    assert CreditHold.objects.get(pk=stale.pk).status == HoldStatus.EXPIRED
    assert CreditHold.objects.get(pk=fresh.pk).status == HoldStatus.HELD
    assert _fresh(account).held == D(10)


# --- Overage ----------------------------------------------------------------------------------


def test_hard_stop_plan_refuses_past_zero_and_writes_nothing():
    account = make_account(plan="free", credits="10")
    ledger.hold_create(account=account, amount="10", key="a")
    before = (LedgerEntry.objects.count(), CreditHold.objects.count())
    with pytest.raises(InsufficientCredits) as exc:
        ledger.hold_create(account=account, amount="0.001", key="b")
    assert exc.value.code == "insufficient_credits"
    assert (LedgerEntry.objects.count(), CreditHold.objects.count()) == before


def test_overage_plan_goes_negative_down_to_its_cap_and_no_further():
    account = make_account(plan="starter", credits="100")  # overage cap 500
    ledger.hold_capture(hold=ledger.hold_create(account=account, amount="600", key="a"))
    assert _fresh(account).balance == D(-500)
    with pytest.raises(InsufficientCredits):
        ledger.hold_create(account=account, amount="0.001", key="b")
    hold = CreditHold.objects.get(key="a")
    assert hold.unfunded == D(500)
    assert selectors.unfunded_outstanding(account=account) == D(500)


# --- Adjustments ------------------------------------------------------------------------------


def test_negative_adjustment_draws_in_burn_down_order_and_may_go_unfunded():
    account = make_account(credits="10", plan="free")
    entry = ledger.adjust(
        account=account, amount="-15", reason="chargeback", idempotency_key="adj-1"
    )
    assert entry.balance_delta == D(-15)
    assert _fresh(account).balance == D(-5)
    assert selectors.unfunded_outstanding(account=account) == D(5)
    unfunded = EntryAllocation.objects.get(entry=entry, grant__isnull=True)
    assert unfunded.amount == D(-5)


def test_adjustment_needs_a_reason():
    account = make_account(credits="10")
    with pytest.raises(ValidationError):
        ledger.adjust(account=account, amount="5", reason="  ", idempotency_key="k")
    assert _fresh(account).balance == D(10)


# --- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["0", "-1", "1.0001", "abc", "NaN", "Infinity", 1.5, None])
def test_bad_amounts_are_refused_with_a_clear_error_and_nothing_written(amount):
    account = make_account(credits="100")
    before = (LedgerEntry.objects.count(), CreditHold.objects.count())
    with pytest.raises(ValidationError) as exc:
        ledger.hold_create(account=account, amount=amount, key="job")
    assert exc.value.code == "validation_error"
    assert "amount" in exc.value.errors
    assert (LedgerEntry.objects.count(), CreditHold.objects.count()) == before


def test_unknown_account_is_not_found_and_nothing_written():
    from config.errors import NotFound

    before = LedgerEntry.objects.count()
    with pytest.raises(NotFound):
        ledger.hold_create(account=CreditAccount(pk=10**9), amount="1", key="x")
    with pytest.raises(NotFound):
        ledger.grant_create(
            account=CreditAccount(pk=10**9), amount="1", source="promo", idempotency_key="x"
        )
    assert LedgerEntry.objects.count() == before


# --- Immutability and the invariant check ----------------------------------------------------


def test_entries_cannot_be_updated_or_deleted_even_with_raw_sql():
    account = make_account(credits="100")
    entry = LedgerEntry.objects.filter(account=account).first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=D(1))
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM credits_ledgerentry WHERE id = %s", [entry.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        EntryAllocation.objects.filter(entry=entry).update(amount=D(1))


@pytest.mark.ledger_drift_expected
def test_drift_is_detected_when_a_balance_is_tampered_with():
    account = make_account(credits="100")
    CreditAccount.objects.filter(pk=account.pk).update(balance=D(101))
    checks = {d.check for d in ledger_drift()}
    assert "balance == sum of posting entries" in checks
    assert "available == grants remaining - unfunded" in checks


@pytest.mark.ledger_drift_expected
def test_drift_is_detected_when_a_grant_is_tampered_with():
    account = make_account(credits="100")
    CreditGrant.objects.filter(account=account, remaining__gt=0).update(remaining=D(1))
    assert any(d.check == "grant remaining == sum of its allocations" for d in ledger_drift())


@pytest.mark.ledger_drift_expected
def test_drift_check_is_one_statement_and_scoped_to_the_accounts_asked(
    django_assert_num_queries,
):
    tampered = make_account(credits="100")
    clean = make_account(credits="50")
    CreditAccount.objects.filter(pk=tampered.pk).update(balance=D(101), version=99)
    CreditGrant.objects.filter(account=tampered, remaining__gt=0).update(remaining=D(1))
    with django_assert_num_queries(1):
        drifts = ledger_drift(account_ids=[tampered.pk, clean.pk])
    assert {d.account_id for d in drifts} == {tampered.pk}
    # Every broken invariant is named, in the checks' order, with its figures.
    assert [d.check for d in drifts] == [
        "balance == sum of posting entries",
        "grant remaining == sum of its allocations",
        "available == grants remaining - unfunded",
        "account version == last entry sequence",
    ]
    balance = drifts[0]
    assert (balance.expected, balance.actual) == ("100.000", "101.000")
    assert drifts[1].grant_id is not None
    assert ledger_drift(account_ids=[clean.pk]) == []
    assert {d.account_id for d in ledger_drift()} == {tampered.pk}


def test_hold_extend_only_moves_an_open_holds_expiry_later():
    account = make_account(credits="100")
    hold = ledger.hold_create(account=account, amount="10", key="job-extend")
    first = CreditHold.objects.get(pk=hold.pk).expires_at
    assert ledger.hold_extend(hold=hold, until=first + timedelta(hours=1)) is True
    assert CreditHold.objects.get(pk=hold.pk).expires_at == first + timedelta(hours=1)
    # Never earlier: an older deadline leaves the later one (and still says it is held).
    assert ledger.hold_extend(hold=hold, until=first) is True
    assert CreditHold.objects.get(pk=hold.pk).expires_at == first + timedelta(hours=1)
    ledger.hold_release(hold=hold)
    assert ledger.hold_extend(hold=hold, until=first + timedelta(hours=2)) is False
    assert CreditHold.objects.get(pk=hold.pk).expires_at == first + timedelta(hours=1)
