"""Enterprise contracts (issue 15): contract credits granted at period open instead of the
plan's (once per period), the contract's overage cap and price in force, versions with who and
why, and tenant isolation of the contract table."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection
from django.utils import timezone

from accounts.contracts.models import Contract
from accounts.models import AuditEvent, User
from accounts.services import subscription_advance_period
from accounts.tenancy import tenant_scope
from config.errors import ValidationError
from credits import ledger
from credits.models import CreditGrant, OverageRecord
from credits.services import contract_change, subscriptions_renew_due
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db

LONG_AGO = timezone.now() - timedelta(days=400)


@pytest.fixture
def staff():
    return User.objects.create_user(email="am@example.com", password="pw-am-12345", is_staff=True)


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="starter")


def renew(org):
    org.subscription.refresh_from_db()
    now = org.subscription.current_period_end + timedelta(hours=1)
    assert subscriptions_renew_due(now=now) == 1
    org.subscription.refresh_from_db()
    return now


def test_contract_credits_are_granted_at_period_open_instead_of_the_plans_once(acme, staff):
    contract_change(
        organization=acme, actor=staff, reason="signed", starts_at=LONG_AGO,
        credits_per_period="12000",
    )  # fmt: skip
    now = renew(acme)
    account = account_of(acme)
    grants = CreditGrant.objects.filter(account=account, source="plan").order_by("created_at")
    newest = grants.last()
    assert newest.amount == D(12000)
    # The same period opened again (a redelivered signal) grants nothing more.
    assert subscription_advance_period(subscription=acme.subscription, now=now) is None
    assert grants.count() == 2  # the first period's plan grant and the contract's, once
    account.refresh_from_db()
    assert account.balance == D(12000)  # the old plan credits expired with their period


def test_a_contract_not_yet_in_force_leaves_the_plans_credits(acme, staff):
    contract_change(
        organization=acme, actor=staff, reason="next year",
        starts_at=timezone.now() + timedelta(days=300), credits_per_period="12000",
    )  # fmt: skip
    renew(acme)
    newest = CreditGrant.objects.filter(account=account_of(acme), source="plan").latest(
        "created_at"
    )
    assert newest.amount == D(500)


def test_the_contracts_overage_cap_applies_at_once_and_its_price_bills_the_period(acme, staff):
    account = account_of(acme)
    assert account.overage_limit == D(500)  # the starter plan's
    contract_change(
        organization=acme, actor=staff, reason="bigger cap", starts_at=LONG_AGO,
        overage_cap="2000", overage_price_usd="0.004",
    )  # fmt: skip
    account.refresh_from_db()
    assert account.overage_limit == D(2000)
    hold = ledger.hold_create(account=account, amount=D(1500), key="job-1")  # 500 + 1000 over
    ledger.hold_capture(hold=hold)
    renew(acme)
    record = OverageRecord.objects.get(account=account)
    assert (record.credits, record.usd_per_credit, record.amount_usd) == (
        D(1000),
        D("0.004"),
        D(4),
    )
    account.refresh_from_db()
    assert account.overage_limit == D(2000)  # the new period keeps the contract's cap


def test_a_zero_cap_is_a_hard_stop(acme, staff):
    contract_change(
        organization=acme, actor=staff, reason="prepaid only", starts_at=LONG_AGO, overage_cap="0"
    )
    account = account_of(acme)
    account.refresh_from_db()
    assert account.overage_limit == 0


def test_every_change_is_a_new_version_with_who_why_and_before_after(acme, staff):
    first = contract_change(
        organization=acme, actor=staff, reason="signed", credits_per_period="1000"
    )
    second = contract_change(
        organization=acme, actor=staff, reason="renegotiated", credits_per_period="1500"
    )
    assert (first.version, second.version) == (1, 2)
    first.refresh_from_db()
    assert first.credits_per_period == D(1000)  # never edited
    audit = AuditEvent.objects.filter(action="contract.set").order_by("pk").last()
    assert audit.actor == staff and audit.organization_id == acme.pk
    assert audit.data["before"]["credits_per_period"] == "1000"
    assert audit.data["after"]["credits_per_period"] == "1500"
    assert audit.data["reason"] == "renegotiated"


@pytest.mark.parametrize(
    "terms",
    [
        {"reason": ""},
        {"reason": "x", "overage_cap": "-1"},
        {"reason": "x", "credits_per_period": "lots"},
        {"reason": "x", "starts_at": timezone.now(), "ends_at": timezone.now() - timedelta(1)},
    ],
)
def test_bad_terms_are_refused_and_write_nothing(acme, staff, terms):
    account = account_of(acme)
    with pytest.raises(ValidationError):
        contract_change(organization=acme, actor=staff, **terms)
    assert not Contract.objects.exists()
    assert not AuditEvent.objects.filter(action="contract.set").exists()
    account.refresh_from_db()
    assert account.overage_limit == D(500)


def test_a_tenant_sees_only_its_own_contract(acme, staff):
    globex = make_org(slug="globex", plan="studio")
    contract_change(organization=acme, actor=staff, reason="a", credits_per_period="1")
    contract_change(organization=globex, actor=staff, reason="g", credits_per_period="2")
    with tenant_scope(acme.pk):
        assert set(Contract.objects.values_list("organization_id", flat=True)) == {acme.pk}
    assert connection.in_atomic_block  # the test's transaction, the scope ended
