"""Plan shapes at acceptance (`credits.services.spend_authorize`; docs/planning.md, "Plan
shapes"): a fair-use unlimited plan holds 0 credits (a usage record) and throttles past its cap
instead of refusing; pay-as-you-go spends purchased credits only, with a hard stop at zero.
Every test ends with the ledger invariants checked (tests/conftest.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Organization, Plan
from config.errors import InsufficientCredits, QuotaExceeded
from credits import ledger, services
from credits.models import CreditGrant, CreditHold, EntryKind, GrantSource, HoldStatus, LedgerEntry
from credits.selectors import fair_use_status, ledger_drift, quota_status
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db


def authorize(org, amount="5", key="job", **kwargs):
    fresh = Organization.objects.get(pk=org.pk)
    return services.spend_authorize(organization=fresh, amount=amount, key=key, **kwargs)


def set_plan(org, **fields) -> None:
    Plan.objects.filter(pk=org.subscription.plan_id).update(**fields)


def account_row(org) -> tuple:
    account = account_of(org)
    return account.balance, account.held, account.version


@pytest.fixture
def unlimited():
    return make_org(slug="bigco", plan="unlimited")


# --- Defaults (data migration) -----------------------------------------------------------------


def test_default_plans_have_the_shapes():
    make_org(plan="free")  # makes sure the defaults exist after a flush
    plans = {p.slug: p for p in Plan.objects.all()}
    assert plans["free"].watermark is True
    assert not any(plans[s].watermark for s in ("starter", "creator", "studio", "enterprise"))
    unlimited, payg = plans["unlimited"], plans["payg"]
    assert (unlimited.unlimited, unlimited.fair_use_cap, unlimited.fair_use_throttle) == (
        True,
        1000,
        "priority",
    )
    assert unlimited.monthly_credits == 0 and not unlimited.shows_credit_prices
    assert (payg.monthly_price_usd, payg.monthly_credits, payg.overage_enabled) == (0, 0, False)
    assert payg.unlimited is False and payg.shows_credit_prices


# --- Fair-use unlimited: the ledger -------------------------------------------------------------


def test_unlimited_job_holds_nothing_and_writes_no_entry(unlimited):
    before = account_row(unlimited)
    hold = authorize(unlimited, amount="7.5", metadata={"model": "sdxl"})
    assert (hold.amount, hold.status, hold.unfunded) == (0, HoldStatus.HELD, 0)
    assert hold.metadata["list_credits"] == "7.500"  # the price it would have cost, recorded
    assert hold.metadata["unlimited"] is True and "fair_use" not in hold.metadata
    assert account_row(unlimited) == before
    assert not LedgerEntry.objects.filter(account=account_of(unlimited)).exists()


def test_unlimited_capture_and_release_resolve_once_and_move_nothing(unlimited):
    done = authorize(unlimited, key="a")
    failed = authorize(unlimited, key="b")
    before = account_row(unlimited)
    captured = services.hold_capture(hold=done)
    assert (captured.status, captured.captured_amount) == (HoldStatus.CAPTURED, 0)
    assert services.hold_capture(hold=done).status == HoldStatus.CAPTURED  # a replay
    assert services.hold_release(hold=failed).status == HoldStatus.RELEASED
    assert services.hold_release(hold=failed).status == HoldStatus.RELEASED
    with pytest.raises(Exception, match="already captured"):
        services.hold_release(hold=done)
    with pytest.raises(Exception, match="already released"):
        services.hold_capture(hold=failed)
    assert account_row(unlimited) == before
    assert not LedgerEntry.objects.filter(account=account_of(unlimited)).exists()
    assert ledger_drift() == []


def test_unlimited_stale_usage_hold_is_expired_by_the_sweep(unlimited):
    hold = authorize(unlimited)
    later = hold.expires_at + timedelta(seconds=1)
    assert services.holds_release_stale(now=later) == 1
    assert CreditHold.objects.get(pk=hold.pk).status == HoldStatus.EXPIRED
    assert account_row(unlimited)[1] == 0


def test_unlimited_replay_returns_the_same_hold(unlimited):
    first = authorize(unlimited, amount="5", key="job-1")
    again = authorize(unlimited, amount="5", key="job-1")
    assert again.pk == first.pk
    assert CreditHold.objects.filter(account=account_of(unlimited)).count() == 1


def test_unlimited_plan_mixed_with_credits_keeps_the_ledger_exact(unlimited):
    """An organization moving between a credit plan and the unlimited plan: credit holds
    and usage holds side by side, every invariant exact."""
    set_plan(unlimited, unlimited=False)
    services.organization_grant(
        organization=unlimited,
        amount="20",
        source=GrantSource.PROMO,
        reason="welcome",
        idempotency_key="promo-1",
    )
    paid = authorize(unlimited, amount="5", key="paid")
    set_plan(unlimited, unlimited=True)
    free = authorize(unlimited, amount="5", key="free")
    services.hold_capture(hold=paid)
    services.hold_capture(hold=free)
    account = account_of(unlimited)
    assert (account.balance, account.held) == (D(15), D(0))
    assert LedgerEntry.objects.filter(account=account, kind=EntryKind.CAPTURE).count() == 1
    assert ledger_drift() == []


# --- Fair-use unlimited: the quotas -------------------------------------------------------------


def test_past_the_fair_use_cap_jobs_are_throttled_to_lowest_priority_not_refused(unlimited):
    set_plan(unlimited, fair_use_cap=2, max_concurrent_jobs=None)
    for n in range(2):
        services.hold_capture(hold=authorize(unlimited, key=f"in-{n}"))
    assert account_of(unlimited).available == 0  # no credits at all, and still accepted
    over = [authorize(unlimited, key=f"over-{n}") for n in range(3)]
    assert [h.metadata["fair_use"] for h in over] == [{"mode": "priority"}] * 3
    status = fair_use_status(organization=Organization.objects.get(pk=unlimited.pk))
    assert (status.cap, status.used, status.throttled) == (2, 5, True)


def test_released_jobs_do_not_count_towards_the_fair_use_cap(unlimited):
    set_plan(unlimited, fair_use_cap=1)
    services.hold_release(hold=authorize(unlimited, key="failed"))
    assert "fair_use" not in authorize(unlimited, key="next").metadata


def test_fair_use_cap_counts_the_current_period_only(unlimited):
    set_plan(unlimited, fair_use_cap=1)
    services.hold_capture(hold=authorize(unlimited, key="old"))
    sub = unlimited.subscription
    later = sub.current_period_end + timedelta(minutes=1)
    account_services.subscription_advance_period(subscription=sub, now=later)
    hold = authorize(unlimited, key="new", now=later)
    assert "fair_use" not in hold.metadata


def test_rate_throttle_spaces_starts_by_the_hourly_rate(unlimited):
    set_plan(
        unlimited,
        fair_use_cap=1,
        fair_use_throttle="rate",
        fair_use_hourly_rate=4,
        max_concurrent_jobs=None,
    )
    now = timezone.now()
    first = authorize(unlimited, key="in", now=now)
    assert "fair_use" not in first.metadata
    starts = [
        services.fair_use_start(authorize(unlimited, key=f"over-{n}", now=now)) for n in range(3)
    ]
    assert starts[0] == now.astimezone(UTC)
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(minutes=15)] * 2
    last = CreditHold.objects.get(key="over-2")
    assert last.expires_at > starts[2]  # the stale sweep leaves a job that may not start yet
    # Once the spacing has passed, the next job starts at once again.
    much_later = now + timedelta(hours=2)
    assert services.fair_use_start(authorize(unlimited, key="over-3", now=much_later)) == (
        much_later.astimezone(UTC)
    )


def test_unlimited_plan_keeps_its_other_limits(unlimited):
    set_plan(unlimited, max_concurrent_jobs=1)
    authorize(unlimited, key="a")
    with pytest.raises(QuotaExceeded) as info:
        authorize(unlimited, key="b")
    assert info.value.extra["reason"] == "concurrent_jobs"


def test_quotas_show_the_fair_use_cap_only_on_unlimited_plans(unlimited):
    set_plan(unlimited, fair_use_cap=3)
    services.hold_capture(hold=authorize(unlimited, key="a"))
    org = Organization.objects.get(pk=unlimited.pk)
    by_name = {q.name: q for q in quota_status(organization=org)}
    assert (by_name["fair_use_cap"].limit, by_name["fair_use_cap"].used) == (3, 1)
    assert by_name["fair_use_cap"].resets_at == org.subscription.current_period_end
    starter = make_org(slug="acme", plan="starter")
    assert "fair_use_cap" not in {q.name for q in quota_status(organization=starter)}


# --- Pay as you go ------------------------------------------------------------------------------


@pytest.fixture
def payg():
    return make_org(slug="payg-co", plan="payg")


def buy(org, credits, key):
    account = account_of(org)
    return ledger.grant_create(
        account=account, amount=credits, source=GrantSource.PURCHASE, idempotency_key=key
    )


def test_payg_starts_with_no_credits_and_no_plan_grant(payg):
    account = account_of(payg)
    assert (account.balance, account.overage_limit) == (0, 0)
    assert not CreditGrant.objects.filter(account=account).exists()
    with pytest.raises(InsufficientCredits):
        authorize(payg, amount="1")


def test_payg_spends_purchased_credits_with_a_hard_stop_at_zero(payg):
    buy(payg, "10", "pack-1")
    hold = authorize(payg, amount="6", key="a")
    services.hold_capture(hold=hold)
    with pytest.raises(InsufficientCredits):
        authorize(payg, amount="5", key="b")  # 4 left, no overage
    services.hold_capture(hold=authorize(payg, amount="4", key="c"))
    account = account_of(payg)
    assert (account.balance, account.held, account.available) == (0, 0, 0)
    assert services.overage_limit_for(payg.subscription.plan) == 0


def test_payg_purchased_credits_survive_period_renewals(payg):
    buy(payg, "10", "pack-1")
    sub = payg.subscription
    for _ in range(2):
        later = sub.current_period_end + timedelta(minutes=1)
        sub = account_services.subscription_advance_period(subscription=sub, now=later)
        sub.refresh_from_db()
    account = account_of(payg)
    assert account.balance == D(10)
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.EXPIRY).exists()
    assert CreditGrant.objects.filter(account=account).count() == 1  # no plan grant, ever


def test_payg_limits_apply_as_documented(payg):
    buy(payg, "100", "pack-1")
    plan = payg.subscription.plan
    assert plan.daily_generation_cap is None  # paid per use: no daily cap
    for n in range(plan.max_concurrent_jobs):
        authorize(payg, amount="1", key=f"j{n}")
    with pytest.raises(QuotaExceeded) as info:
        authorize(payg, amount="1", key="one-more")
    assert info.value.extra["reason"] == "concurrent_jobs"
    key = account_services.api_key_create(organization=payg, name="k", actor=None)[0]
    services.hold_release(hold=CreditHold.objects.get(key="j0"))
    assert authorize(payg, amount="1", key="via-api", api_key=key).amount == 1


def test_fair_use_time_format_orders_like_time():
    a = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    b = a + timedelta(microseconds=1)
    fmt = services.FAIR_USE_TIME_FORMAT
    assert a.strftime(fmt) < b.strftime(fmt)
