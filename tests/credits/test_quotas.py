"""Quotas at acceptance (`credits.services.spend_authorize`), in the spec's order, each with its
code: API access (403 permission_denied), daily cap and concurrent jobs (429 quota_exceeded with
a reason), credits (402 insufficient_credits). The rate limit per key (429 rate_limited) is the
API layer's throttle (tests/config/test_throttling.py, tests/generations/test_api.py).
A refusal writes nothing; replaying an accepted key returns its hold."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Organization, Plan
from config.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    PermissionDenied,
    QuotaExceeded,
    ServiceError,
)
from credits import ledger
from credits.models import CreditAccount, CreditHold, HoldStatus, LedgerEntry
from credits.services import spend_authorize
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db


def authorize(org, amount="1", key="job", **kwargs):
    fresh = Organization.objects.get(pk=org.pk)  # the plan as it is now in the database
    return spend_authorize(organization=fresh, amount=amount, key=key, **kwargs)


def writes(org) -> tuple:
    account = account_of(org)
    return (
        CreditHold.objects.filter(account=account).count(),
        LedgerEntry.objects.filter(account=account).count(),
        CreditAccount.objects.values_list("balance", "held", "version").get(pk=account.pk),
    )


def refused(org, error, **kwargs) -> ServiceError:
    """Call, expect `error`, and check nothing was written."""
    before = writes(org)
    with pytest.raises(error) as info:
        authorize(org, **kwargs)
    assert writes(org) == before
    return info.value


def set_plan(org, **fields) -> None:
    Plan.objects.filter(pk=org.subscription.plan_id).update(**fields)


def new_key(org):
    return account_services.api_key_create(organization=org, name="k", actor=None)[0]


@pytest.fixture
def free():
    return make_org(slug="freebie", plan="free")


@pytest.fixture
def starter():
    return make_org(slug="acme", plan="starter")


# --- Each limit with its code -------------------------------------------------------------------


def test_api_key_on_a_plan_without_api_access_is_permission_denied(free):
    error = refused(free, PermissionDenied, api_key=new_key(free))
    assert (error.code, error.status_code, error.extra["reason"]) == (
        "permission_denied",
        403,
        "api_access",
    )
    assert error.extra["limit"] == "api_access"


def test_the_same_plan_may_submit_from_the_web_ui(free):
    hold = authorize(free)  # no API key: a browser submission
    assert hold.status == HoldStatus.HELD


def test_the_rate_limit_is_left_to_the_api_layer(starter):
    set_plan(starter, api_rate_limit_per_min=1, max_concurrent_jobs=None)
    key = new_key(starter)
    for i in range(3):  # the API layer's throttle counted these requests already
        authorize(starter, key=f"job-{i}", api_key=key)
    assert CreditHold.objects.filter(account=account_of(starter)).count() == 3


def test_daily_generation_cap_refuses_the_21st_generation_of_the_day(free):
    account = account_of(free)
    yesterday = timezone.now() - timedelta(days=1)
    old = authorize(free, key="yesterday", now=yesterday)  # yesterday's don't count
    ledger.hold_capture(hold=old)
    failed = authorize(free, key="failed")  # given back (failed job): doesn't count
    ledger.hold_release(hold=failed)
    for i in range(20):
        hold = authorize(free, key=f"job-{i}")
        ledger.hold_capture(hold=hold)

    error = refused(free, QuotaExceeded, key="job-21")

    assert (error.code, error.status_code) == ("quota_exceeded", 429)
    assert (error.extra["reason"], error.extra["limit"]) == ("daily_generation_cap", "daily_cap")
    assert (error.extra["limit_value"], error.extra["used"]) == (20, 20)
    tomorrow = timezone.now().astimezone(UTC).date() + timedelta(days=1)
    assert error.extra["resets_at"] == f"{tomorrow:%Y-%m-%d}T00:00:00Z"
    assert account_of(free).available == D(50 - 21)
    # Tomorrow (UTC) the cap starts again.
    hold = authorize(free, key="tomorrow", now=timezone.now() + timedelta(days=1))
    assert hold.status == HoldStatus.HELD
    assert account.pk == hold.account_id


def test_concurrent_jobs_refuses_a_second_running_job_on_free(free):
    running = authorize(free, key="first")
    error = refused(free, QuotaExceeded, key="second")
    assert (error.code, error.extra["reason"], error.extra["limit"]) == (
        "quota_exceeded",
        "concurrent_jobs",
        "concurrency",
    )
    assert (error.extra["limit_value"], error.extra["used"]) == (1, 1)
    ledger.hold_capture(hold=running)
    assert authorize(free, key="second").status == HoldStatus.HELD


def test_credits_are_checked_last_hard_stop_on_free(free):
    error = refused(free, InsufficientCredits, amount="50.001")
    assert (error.code, error.status_code, error.extra["limit"]) == (
        "insufficient_credits",
        402,
        "credits",
    )
    assert authorize(free, amount="50").amount == D(50)


def test_credits_with_overage_go_down_to_the_cap_and_no_further(starter):
    set_plan(starter, max_concurrent_jobs=None)
    refused(starter, InsufficientCredits, amount="1000.001", key="too-big")
    hold = authorize(starter, amount="1000", key="to-the-cap")
    assert hold.unfunded == D(500)
    refused(starter, InsufficientCredits, amount="0.001", key="one-more")


# --- Order ---------------------------------------------------------------------------------------


def test_when_every_limit_is_hit_the_first_in_spec_order_is_reported(starter):
    set_plan(starter, daily_generation_cap=1, max_concurrent_jobs=1)
    key = new_key(starter)
    # One job that uses the day's cap, the one slot and every credit.
    authorize(starter, amount="1000", key="everything", api_key=key)

    # API access, daily cap, concurrent jobs and credits are all exhausted now.
    set_plan(starter, api_access=False)
    error = refused(starter, PermissionDenied, key="x", api_key=key)
    assert error.extra["reason"] == "api_access"

    set_plan(starter, api_access=True)
    error = refused(starter, QuotaExceeded, key="x", api_key=key)
    assert error.extra["reason"] == "daily_generation_cap"

    set_plan(starter, daily_generation_cap=None)
    error = refused(starter, QuotaExceeded, key="x", api_key=key)
    assert error.extra["reason"] == "concurrent_jobs"

    set_plan(starter, max_concurrent_jobs=None)
    refused(starter, InsufficientCredits, key="x", api_key=key)


def test_daily_cap_is_reported_before_concurrent_jobs_and_credits_on_free(free):
    for i in range(19):
        ledger.hold_capture(hold=authorize(free, amount="2", key=f"job-{i}"))
    authorize(free, amount="12", key="running")  # 20th today, the one slot, the last credits
    assert account_of(free).available == 0
    error = refused(free, QuotaExceeded, key="next")
    assert error.extra["reason"] == "daily_generation_cap"


# --- Replays ------------------------------------------------------------------------------------


def test_replaying_an_accepted_key_returns_its_hold_even_when_quotas_are_exhausted(free):
    hold = authorize(free, amount="50", key="job-1")  # the one slot, every credit
    before = writes(free)
    again = authorize(free, amount="50", key="job-1")
    assert again.pk == hold.pk
    assert writes(free) == before


def test_replaying_a_key_with_another_amount_is_a_conflict(free):
    authorize(free, amount="5", key="job-1")
    refused(free, IdempotencyConflict, amount="6", key="job-1")
