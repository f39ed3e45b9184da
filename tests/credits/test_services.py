"""The staff and operator actions of `credits.services`: each posts its movement and its audit
row (with the acting user) in one durable transaction — an audit row that cannot be written
takes the movement back with it, a replay writes no second row, and none of them runs inside
another transaction."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.db import transaction

from accounts.models import AuditEvent
from config.errors import ValidationError
from credits import ledger, services
from credits.models import (
    CreditGrant,
    CreditHold,
    EntryKind,
    HoldStatus,
    LedgerEntry,
    OverageRecord,
    OverageStatus,
)
from tests.factories import UserFactory, account_of, make_org

pytestmark = pytest.mark.django_db


class AuditDown(Exception):
    pass


@pytest.fixture
def org():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def staff():
    return UserFactory(is_staff=True)


@pytest.fixture
def audit_fails(monkeypatch):
    def fail(**kwargs):
        raise AuditDown("audit table unavailable")

    monkeypatch.setattr(services.staff, "audit_record", fail)  # where the actions look it up


@pytest.fixture
def overage(org):
    """An open overage record of 20 credits (520 captured on a 500-credit plan)."""
    account = account_of(org)
    ledger.hold_capture(hold=ledger.hold_create(account=account, amount="520", key="big"))
    sub = org.subscription
    return services.overage_close(
        account=account,
        plan=sub.plan,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
    )


def audits(action: str):
    return AuditEvent.objects.filter(action=action)


def snapshot(account) -> tuple:
    account.refresh_from_db()
    return (
        account.balance,
        account.held,
        account.version,
        LedgerEntry.objects.filter(account=account).count(),
    )


# --- Staff hold release -------------------------------------------------------------------------


def test_staff_release_gives_the_hold_back_and_audits_it_with_the_staff_user(org, staff):
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount="30", key="stuck")

    released = services.hold_release_by_staff(hold=hold, actor=staff, reason="stuck job")

    assert released.status == HoldStatus.RELEASED
    entry = LedgerEntry.objects.get(hold=hold, kind=EntryKind.RELEASE)
    assert (entry.actor, entry.reason) == (staff, "stuck job")
    audit = audits("credits.hold_released").get()
    assert (audit.actor, audit.organization, audit.target_id) == (staff, org, str(hold.pk))
    assert audit.data == {"key": "stuck", "amount": "30.000", "reason": "stuck job"}
    account.refresh_from_db()
    assert account.held == 0


def test_staff_release_of_a_resolved_hold_is_refused_and_writes_nothing(org, staff):
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount="30", key="stuck")
    services.hold_release_by_staff(hold=hold, actor=staff)
    captured = ledger.hold_capture(hold=ledger.hold_create(account=account, amount="5", key="c"))
    before = snapshot(account)

    for resolved in (hold, captured):
        with pytest.raises(ValidationError):
            services.hold_release_by_staff(hold=resolved, actor=staff)

    assert snapshot(account) == before
    assert audits("credits.hold_released").count() == 1


def test_staff_release_is_rolled_back_when_its_audit_row_cannot_be_written(org, staff, audit_fails):
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount="30", key="stuck")
    before = snapshot(account)

    with pytest.raises(AuditDown):
        services.hold_release_by_staff(hold=hold, actor=staff)

    assert snapshot(account) == before
    assert CreditHold.objects.get(pk=hold.pk).status == HoldStatus.HELD
    assert not LedgerEntry.objects.filter(hold=hold, kind=EntryKind.RELEASE).exists()


# --- Staff overage settlement -------------------------------------------------------------------


def test_staff_settlement_posts_the_entry_and_audits_it_once(org, staff, overage):
    entry = services.overage_settle(record=overage, actor=staff, reason="paid by wire")
    again = services.overage_settle(record=overage, actor=staff, reason="paid by wire")

    assert again.pk == entry.pk
    overage.refresh_from_db()
    assert (overage.status, overage.settlement_entry_id) == (OverageStatus.PAID, entry.pk)
    assert (entry.balance_delta, entry.actor_id, entry.reason) == (D(20), staff.pk, "paid by wire")
    audit = audits("overage.settled").get()
    assert (audit.actor, audit.organization) == (staff, org)
    assert audit.data == {"credits": "20.000", "entry": entry.pk}


def test_staff_settlement_is_rolled_back_when_its_audit_row_cannot_be_written(
    org, staff, overage, audit_fails
):
    account = account_of(org)
    before = snapshot(account)

    with pytest.raises(AuditDown):
        services.overage_settle(record=overage, actor=staff)

    assert snapshot(account) == before
    overage.refresh_from_db()
    assert (overage.status, overage.settlement_entry_id) == (OverageStatus.OPEN, None)


def test_a_void_overage_record_cannot_be_settled(org, staff, overage):
    OverageRecord.objects.filter(pk=overage.pk).update(status=OverageStatus.VOID)
    with pytest.raises(ValidationError):
        services.overage_settle(record=overage, actor=staff)
    assert not audits("overage.settled").exists()


# --- Grants and adjustments ---------------------------------------------------------------------


def test_grant_and_adjustment_are_rolled_back_when_their_audit_row_cannot_be_written(
    org, staff, audit_fails
):
    account = account_of(org)
    before = snapshot(account)
    with pytest.raises(AuditDown):
        services.organization_grant(
            organization=org, amount="10", source="promo", reason="launch", idempotency_key="g"
        )
    with pytest.raises(AuditDown):
        services.account_adjust(
            account=account, amount="-10", reason="fix", actor=staff, idempotency_key="a"
        )
    assert snapshot(account) == before
    assert not CreditGrant.objects.filter(account=account, source="promo").exists()


def test_a_replayed_grant_or_adjustment_writes_no_second_audit_row(org, staff):
    account = account_of(org)
    for _ in range(2):
        services.organization_grant(
            organization=org,
            amount="10",
            source="promo",
            reason="launch",
            idempotency_key="g",
            actor=staff,
        )
        services.account_adjust(
            account=account, amount="-3", reason="fix", actor=staff, idempotency_key="a"
        )
    assert audits("credits.granted").count() == 1
    assert audits("credits.adjusted").count() == 1
    account.refresh_from_db()
    assert account.balance == D(507)


# --- Durable: a whole action, never a step of another transaction --------------------------------


@pytest.mark.parametrize(
    "action",
    ["organization_grant", "account_adjust", "hold_release_by_staff", "overage_settle"],
)
def test_staff_actions_refuse_to_run_inside_another_transaction(org, staff, overage, action):
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount="1", key="open")
    calls = {
        "organization_grant": lambda: services.organization_grant(
            organization=org, amount="1", source="promo", reason="x", idempotency_key="k"
        ),
        "account_adjust": lambda: services.account_adjust(
            account=account, amount="1", reason="x", actor=staff, idempotency_key="k"
        ),
        "hold_release_by_staff": lambda: services.hold_release_by_staff(hold=hold, actor=staff),
        "overage_settle": lambda: services.overage_settle(record=overage, actor=staff),
    }
    with transaction.atomic(), pytest.raises(RuntimeError, match="durable"):
        calls[action]()


def test_create_org_grants_inside_its_own_transaction(org):
    """The one in-transaction grant: `organization_grant_in_transaction` joins the caller."""
    with transaction.atomic():
        grant = services.organization_grant_in_transaction(
            organization=org, amount="5", source="adjustment", reason="x", idempotency_key="k"
        )
    assert grant.amount == D(5)
    assert audits("credits.granted").count() == 1
