"""Plan periods: renewal grants the new period's credits once, expires what is left of the old
plan grant, and closes the old period's overage into one OverageRecord at the plan's price."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from accounts.models import AuditEvent
from accounts.services import subscription_advance_period
from credits import ledger
from credits.models import CreditGrant, EntryKind, LedgerEntry, OverageRecord, OverageStatus
from credits.services import overage_close, subscriptions_renew_due
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db


def spend(account, amount, key):
    hold = ledger.hold_create(account=account, amount=amount, key=key)
    return ledger.hold_capture(hold=hold)


def after_period(org, *, hours=1):
    org.subscription.refresh_from_db()
    return org.subscription.current_period_end + timedelta(hours=hours)


@pytest.fixture
def starter():
    return make_org(slug="acme", plan="starter")


def test_renewal_grants_the_new_periods_credits_once_and_expires_the_old_rest(starter):
    account = account_of(starter)
    old_grant = CreditGrant.objects.get(account=account, source="plan")
    old_start, old_end = (
        starter.subscription.current_period_start,
        starter.subscription.current_period_end,
    )
    spend(account, "100", "job-1")
    now = after_period(starter)

    assert subscriptions_renew_due(now=now) == 1
    assert subscriptions_renew_due(now=now) == 0
    assert subscription_advance_period(subscription=starter.subscription, now=now) is None

    starter.subscription.refresh_from_db()
    assert starter.subscription.current_period_start == old_end
    assert starter.subscription.current_period_start > old_start
    old_grant.refresh_from_db()
    assert old_grant.remaining == 0
    expiry = LedgerEntry.objects.get(account=account, kind=EntryKind.EXPIRY)
    assert (expiry.grant_id, expiry.amount, expiry.balance_delta) == (
        old_grant.pk,
        D(400),
        D(-400),
    )
    new_grants = CreditGrant.objects.filter(account=account, source="plan").exclude(pk=old_grant.pk)
    assert new_grants.count() == 1
    new_grant = new_grants.get()
    assert (new_grant.amount, new_grant.remaining) == (D(500), D(500))
    assert new_grant.expires_at == starter.subscription.current_period_end
    account.refresh_from_db()
    assert (account.balance, account.held) == (D(500), 0)
    assert not OverageRecord.objects.exists()  # no overage in that period


def test_renewal_after_missed_periods_grants_only_the_current_one(starter):
    account = account_of(starter)
    now = after_period(starter, hours=24 * 70)  # more than two months late
    assert subscriptions_renew_due(now=now) == 1
    starter.subscription.refresh_from_db()
    assert (
        starter.subscription.current_period_start <= now < starter.subscription.current_period_end
    )
    assert CreditGrant.objects.filter(account=account, source="plan").count() == 2
    account.refresh_from_db()
    assert account.balance == D(500)


def test_period_close_bills_captured_overage_at_the_plans_price_once(starter):
    account = account_of(starter)
    sub = starter.subscription
    period = (sub.current_period_start, sub.current_period_end)
    spend(account, "600", "job-big")  # 100 past zero, captured
    now = after_period(starter)

    subscriptions_renew_due(now=now)
    subscriptions_renew_due(now=now)

    record = OverageRecord.objects.get(account=account)
    assert (record.period_start, record.period_end) == period
    assert (record.credits, record.usd_per_credit) == (D(100), D("0.025"))
    assert record.amount_usd == D("2.500000")  # 100 × 0.025
    assert (record.plan_slug, record.status) == ("starter", OverageStatus.OPEN)
    assert record.settlement_entry is None
    audit = AuditEvent.objects.get(action="overage.closed")
    assert audit.data == {"credits": "100.000", "usd": "2.500000", "plan": "starter"}
    # Closing the same period again (e.g. directly) returns the same record.
    again = overage_close(
        account=account, plan=sub.plan, period_start=period[0], period_end=period[1]
    )
    assert again.pk == record.pk
    assert OverageRecord.objects.count() == 1


def test_unfunded_part_of_an_open_hold_is_billed_only_once_captured(starter):
    account = account_of(starter)
    spend(account, "500", "job-all")  # exactly the plan credits: no overage
    hold = ledger.hold_create(account=account, amount="30", key="job-running")  # 30 unfunded
    assert hold.unfunded == D(30)

    subscriptions_renew_due(now=after_period(starter))
    assert not OverageRecord.objects.exists()

    ledger.hold_capture(hold=hold)
    subscriptions_renew_due(now=after_period(starter))

    record = OverageRecord.objects.get(account=account)
    assert record.credits == D(30)
    assert record.amount_usd == D("0.750000")


def test_each_period_bills_only_its_own_new_overage(starter):
    account = account_of(starter)
    spend(account, "600", "p1")  # 100 over in period 1
    subscriptions_renew_due(now=after_period(starter))
    # Period 2's 500 plan credits fund new spending; the period-1 debt stays on its record
    # (balance 400 until it is paid). 550 more is 50 of new overage.
    spend(account, "550", "p2")
    subscriptions_renew_due(now=after_period(starter))

    records = list(OverageRecord.objects.filter(account=account).order_by("period_start"))
    assert [r.credits for r in records] == [D(100), D(50)]
    assert [r.amount_usd for r in records] == [D("2.500000"), D("1.250000")]


def test_settled_overage_is_not_billed_again(starter):
    account = account_of(starter)
    spend(account, "600", "p1")
    subscriptions_renew_due(now=after_period(starter))
    ledger.overage_settle(record=OverageRecord.objects.get())
    subscriptions_renew_due(now=after_period(starter))
    assert OverageRecord.objects.count() == 1
    account.refresh_from_db()
    assert account.balance == D(500)  # the debt was paid; the new period's credits are whole


def test_free_plan_renewal_grants_its_credits_and_bills_no_overage():
    org = make_org(slug="freebie", plan="free")
    account = account_of(org)
    spend(account, "50", "all")
    subscriptions_renew_due(now=after_period(org))
    assert not OverageRecord.objects.exists()
    account.refresh_from_db()
    assert (account.balance, account.overage_limit) == (D(50), 0)


def test_stripe_managed_paid_subscriptions_are_not_renewed_by_the_beat_task(starter):
    sub = starter.subscription
    sub.stripe_subscription_id = "sub_123"
    sub.save(update_fields=["stripe_subscription_id"])
    assert subscriptions_renew_due(now=after_period(starter)) == 0
    assert CreditGrant.objects.filter(source="plan").count() == 1


def test_periods_keep_the_billing_anchor_day_through_short_months():
    from datetime import UTC, datetime

    from accounts.models import Plan
    from accounts.services import subscription_advance_period, subscription_start
    from tests.factories import make_org

    org = make_org(plan="starter")
    jan31 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    sub = subscription_start(organization=org, plan=Plan.objects.get(slug="starter"), now=jan31)
    ends = []
    for _ in range(3):
        sub = subscription_advance_period(subscription=sub, now=sub.current_period_end)
        ends.append(sub.current_period_end.date().isoformat())
    assert ends == ["2026-03-31", "2026-04-30", "2026-05-31"]
    assert sub.current_period_start.date().isoformat() == "2026-04-30"
