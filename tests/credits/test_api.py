"""Credits endpoints of API v1: /balance/, /ledger/, /quotas/, /usage/ — shapes, values
(decimals as strings), tenant isolation, pagination, filters and problem+json errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditEvent
from credits import ledger
from credits.models import CreditGrant, CreditHold, LedgerEntry
from tests.config.helpers import assert_problem, bearer
from tests.factories import account_of, make_account, make_org

pytestmark = pytest.mark.django_db

BALANCE = "/api/v1/balance/"
LEDGER = "/api/v1/ledger/"
QUOTAS = "/api/v1/quotas/"
USAGE = "/api/v1/usage/"
ALL = (BALANCE, LEDGER, QUOTAS, USAGE)


def new_key(org) -> str:
    return account_services.api_key_create(organization=org, name="k", actor=None)[1]


def writes() -> tuple[int, int, int]:
    return LedgerEntry.objects.count(), CreditHold.objects.count(), AuditEvent.objects.count()


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def acme_key(acme):
    return new_key(acme)


@pytest.fixture
def globex():
    return make_org(slug="globex", plan="creator")


# --- /balance/ ----------------------------------------------------------------------------------


def test_balance_shows_amounts_as_strings_grants_in_burn_down_order_and_next_expiry(
    client, acme, acme_key
):
    account = account_of(acme)
    purchase = ledger.grant_create(
        account=account, amount="100", source="purchase", idempotency_key="pack-1"
    )
    ledger.hold_create(account=account, amount="30.5", key="job-1")
    plan_grant = CreditGrant.objects.get(account=account, source="plan")

    response = client.get(BALANCE, **bearer(acme_key))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "balance",
        "held",
        "available",
        "overage_used",
        "overage_cap",
        "grants",
        "plan",
        "next_expiry",
    }
    assert body["balance"] == "600.000"
    assert body["held"] == "30.500"
    assert body["available"] == "569.500"
    assert body["overage_used"] == "0.000"
    assert body["overage_cap"] == "500.000"
    assert body["plan"] == "starter"
    # The plan grant (priority 20) burns before the purchase (40); the hold drew from it.
    assert [g["id"] for g in body["grants"]] == [plan_grant.pk, purchase.pk]
    first = body["grants"][0]
    assert set(first) == {
        "id",
        "source",
        "amount",
        "remaining",
        "priority",
        "expires_at",
        "created_at",
    }
    assert (first["source"], first["amount"], first["remaining"], first["priority"]) == (
        "plan",
        "500.000",
        "469.500",
        20,
    )
    assert body["grants"][1]["expires_at"] is None
    assert body["next_expiry"]["grant"] == plan_grant.pk
    assert body["next_expiry"]["remaining"] == "469.500"
    assert body["next_expiry"]["expires_at"].startswith(
        acme.subscription.current_period_end.date().isoformat()
    )


def test_balance_reports_overage_used_when_available_is_negative(client):
    account = make_account(plan="starter", credits="10")
    ledger.hold_create(account=account, amount="25.25", key="big-job")
    body = client.get(BALANCE, **bearer(new_key(account.organization))).json()
    assert (body["balance"], body["held"], body["available"]) == ("10.000", "25.250", "-15.250")
    assert body["overage_used"] == "15.250"
    assert body["next_expiry"] is None  # only a never-expiring purchase is left


def test_balance_of_one_org_never_shows_another_orgs_credits(client, acme, acme_key, globex):
    ledger.grant_create(
        account=account_of(globex), amount="777", source="promo", idempotency_key="g-promo"
    )
    acme_body = client.get(BALANCE, **bearer(acme_key)).json()
    globex_body = client.get(BALANCE, **bearer(new_key(globex))).json()
    assert (acme_body["balance"], acme_body["plan"]) == ("500.000", "starter")
    assert (globex_body["balance"], globex_body["plan"]) == ("2777.000", "creator")
    globex_grants = set(
        CreditGrant.objects.filter(account__organization=globex).values_list("pk", flat=True)
    )
    assert not {g["id"] for g in acme_body["grants"]} & globex_grants


# --- /ledger/ -----------------------------------------------------------------------------------


def test_ledger_lists_entries_newest_first_with_every_field(client, acme, acme_key):
    account = account_of(acme)
    hold = ledger.hold_create(account=account, amount="12", key="job-42")
    ledger.hold_capture(hold=hold, amount="10")

    rows = client.get(LEDGER, **bearer(acme_key)).json()["results"]

    assert [r["kind"] for r in rows] == ["capture", "release", "hold", "grant"]
    assert [r["sequence"] for r in rows] == [4, 3, 2, 1]
    capture, release, held, grant = rows
    assert set(capture) == {
        "id",
        "sequence",
        "kind",
        "amount",
        "balance_delta",
        "held_delta",
        "balance_after",
        "held_after",
        "grant",
        "hold",
        "reason",
        "created_at",
    }
    assert (capture["amount"], capture["balance_delta"], capture["held_delta"]) == (
        "10.000",
        "-10.000",
        "-10.000",
    )
    assert (capture["balance_after"], capture["held_after"]) == ("490.000", "0.000")
    assert (release["amount"], release["held_delta"], release["reason"]) == (
        "2.000",
        "-2.000",
        "partial capture",
    )
    assert (held["hold"], held["grant"], held["held_after"]) == ("job-42", None, "12.000")
    assert grant["grant"] == CreditGrant.objects.get(account=account).pk
    assert grant["hold"] is None
    assert grant["balance_after"] == "500.000"


def test_ledger_cursor_pagination_walks_every_entry_once_in_order(client, acme, acme_key):
    account = account_of(acme)
    same_moment = timezone.now() - timedelta(minutes=5)
    for i in range(6):  # identical timestamps: the cursor must still not skip or repeat
        ledger.grant_create(
            account=account,
            amount="1",
            source="promo",
            idempotency_key=f"p{i}",
            now=same_moment,
        )
    for i in range(3):
        ledger.hold_create(account=account, amount="1", key=f"job-{i}")
    expected = list(
        LedgerEntry.objects.filter(account=account)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert len(expected) == 10

    seen, url, pages = [], f"{LEDGER}?page_size=3", 0
    while url:
        body = client.get(url, **bearer(acme_key)).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 3
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1

    assert seen == expected
    assert pages == 4


def test_ledger_filters_by_kind(client, acme, acme_key):
    account = account_of(acme)
    for i in range(3):
        ledger.hold_create(account=account, amount="2", key=f"job-{i}")
    rows = client.get(LEDGER, {"kind": "hold"}, **bearer(acme_key)).json()["results"]
    assert len(rows) == 3
    assert {r["kind"] for r in rows} == {"hold"}
    assert client.get(LEDGER, {"kind": "refund"}, **bearer(acme_key)).json()["results"] == []


def test_ledger_filters_by_time_range(client, acme, acme_key):
    account = account_of(acme)
    base = timezone.now() - timedelta(days=3)
    for day in range(3):
        ledger.grant_create(
            account=account,
            amount="1",
            source="promo",
            idempotency_key=f"d{day}",
            now=base + timedelta(days=day),
        )
    params = {
        "kind": "grant",
        "since": (base + timedelta(days=1)).isoformat(),
        "until": (base + timedelta(days=2)).isoformat(),
    }
    rows = client.get(LEDGER, params, **bearer(acme_key)).json()["results"]
    assert [r["created_at"][:10] for r in rows] == [(base + timedelta(days=1)).date().isoformat()]


def test_ledger_since_and_until_accept_dates(client, acme, acme_key):
    account = account_of(acme)
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for offset in (-3, -2, -1):
        ledger.grant_create(
            account=account,
            amount="1",
            source="promo",
            idempotency_key=f"d{offset}",
            now=day + timedelta(days=offset),
        )
    params = {
        "kind": "grant",
        "since": (day + timedelta(days=-2)).date().isoformat(),
        "until": (day + timedelta(days=-1)).date().isoformat(),  # exclusive
    }
    rows = client.get(LEDGER, params, **bearer(acme_key)).json()["results"]
    assert [r["created_at"][:10] for r in rows] == [(day - timedelta(days=2)).date().isoformat()]


def test_ledger_never_includes_another_tenants_entries(client, acme, acme_key, globex):
    ledger.hold_create(account=account_of(globex), amount="5", key="globex-job")
    acme_ids = {r["id"] for r in client.get(LEDGER, **bearer(acme_key)).json()["results"]}
    globex_ids = set(
        LedgerEntry.objects.filter(account__organization=globex).values_list("pk", flat=True)
    )
    assert acme_ids == set(
        LedgerEntry.objects.filter(account__organization=acme).values_list("pk", flat=True)
    )
    assert not acme_ids & globex_ids
    hold_rows = client.get(LEDGER, {"kind": "hold"}, **bearer(acme_key)).json()["results"]
    assert hold_rows == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "bogus"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"cursor": "garbage"}, "cursor"),
        ({"since": "0001-01-01"}, "since"),
        ({"until": "9999-12-31T23:59:59+00:00"}, "until"),
        ({"kind": ""}, "kind"),
        ({"page_size": "abc"}, "page_size"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "100000"}, "page_size"),
    ],
)
def test_ledger_bad_query_parameters_are_a_400_naming_the_field(
    client, acme, acme_key, params, field
):
    before = writes()
    body = assert_problem(
        client.get(LEDGER, params, **bearer(acme_key)), status=400, code="validation_error"
    )
    assert field in body["errors"]
    assert writes() == before


# --- /quotas/ -----------------------------------------------------------------------------------


def test_quotas_list_limits_in_checking_order_with_current_use(client, acme, acme_key):
    ledger.hold_create(account=account_of(acme), amount="600", key="job-1")  # 100 over
    body = client.get(QUOTAS, **bearer(acme_key)).json()
    assert body["plan"] == "starter"
    by_name = {q["name"]: q for q in body["quotas"]}
    assert [q["name"] for q in body["quotas"]] == [
        "api_access",
        "api_rate_limit_per_min",
        "daily_generation_cap",
        "max_concurrent_jobs",
        "overage_cap",
    ]
    for quota in body["quotas"]:
        assert set(quota) == {"name", "unit", "limit", "used", "resets_at"}
    assert by_name["api_access"]["limit"] == 1
    assert by_name["api_rate_limit_per_min"]["limit"] == 300
    assert by_name["daily_generation_cap"]["limit"] is None  # no cap on starter
    assert by_name["daily_generation_cap"]["used"] == 1
    assert by_name["max_concurrent_jobs"] == {
        "name": "max_concurrent_jobs",
        "unit": "jobs",
        "limit": 2,
        "used": 1,
        "resets_at": None,
    }
    assert by_name["overage_cap"]["unit"] == "credits"
    assert (by_name["overage_cap"]["limit"], by_name["overage_cap"]["used"]) == (
        "500.000",
        "100.000",
    )


def test_quotas_of_free_plan_show_the_daily_cap_and_when_it_resets(client):
    org = make_org(slug="freebie", plan="free")
    owner = org.memberships.get().user
    client.force_login(owner)  # free plans have no API access: use the browser session
    ledger.hold_create(account=account_of(org), amount="1", key="job-1")
    body = client.get(QUOTAS).json()
    daily = next(q for q in body["quotas"] if q["name"] == "daily_generation_cap")
    assert (daily["limit"], daily["used"]) == (20, 1)
    tomorrow = (timezone.now().astimezone(UTC) + timedelta(days=1)).date().isoformat()
    assert daily["resets_at"].startswith(tomorrow)
    api = next(q for q in body["quotas"] if q["name"] == "api_access")
    assert api["limit"] == 0


# --- /usage/ ------------------------------------------------------------------------------------


def _job(account, key, *, model, at, charge=None, release=False, amount="10"):
    hold = ledger.hold_create(
        account=account, amount=amount, key=key, metadata={"model": model}, now=at
    )
    if release:
        ledger.hold_release(hold=hold, now=at + timedelta(minutes=1))
    elif charge is not None:
        ledger.hold_capture(hold=hold, amount=charge, now=at + timedelta(minutes=1))
    return hold


@pytest.fixture
def usage_history(acme):
    account = account_of(acme)
    day1 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    day2 = day1 + timedelta(days=1)
    _job(account, "a", model="flux", at=day1 + timedelta(hours=1), charge="10")
    _job(account, "b", model="sdxl", at=day1 + timedelta(hours=2), charge="7.5")
    _job(account, "c", model="flux", at=day1 + timedelta(hours=3), release=True)
    _job(account, "d", model="flux", at=day2 + timedelta(hours=1), charge="4.25")
    _job(account, "e", model="sdxl", at=day2 + timedelta(hours=2))  # still running
    return day1, day2


def test_usage_by_day_sums_charged_credits_and_counts(client, acme_key, usage_history):
    day1, day2 = usage_history
    day3 = day2 + timedelta(days=1)
    params = {"start": day1.date().isoformat(), "end": day3.date().isoformat()}
    body = client.get(USAGE, params, **bearer(acme_key)).json()
    assert body["group_by"] == "day"
    assert body["start"].startswith(day1.date().isoformat())
    assert body["end"].startswith(day3.date().isoformat())
    assert body["rows"] == [
        {
            "day": day1.date().isoformat(),
            "credits_spent": "17.500",
            "generations": 2,
            "released": 1,
        },
        {"day": day2.date().isoformat(), "credits_spent": "4.250", "generations": 1, "released": 0},
    ]
    assert body["totals"] == {"credits_spent": "21.750", "generations": 3, "released": 1}


def test_usage_by_model_groups_per_model(client, acme_key, usage_history):
    day1, _ = usage_history
    params = {"start": day1.isoformat(), "group_by": "model"}
    body = client.get(USAGE, params, **bearer(acme_key)).json()
    assert body["rows"] == [
        {"model": "flux", "credits_spent": "14.250", "generations": 2, "released": 1},
        {"model": "sdxl", "credits_spent": "7.500", "generations": 1, "released": 0},
    ]


def test_usage_end_is_exclusive(client, acme_key, usage_history):
    day1, day2 = usage_history
    params = {"start": day1.date().isoformat(), "end": day2.date().isoformat()}
    rows = client.get(USAGE, params, **bearer(acme_key)).json()["rows"]
    assert [r["day"] for r in rows] == [day1.date().isoformat()]


def test_usage_defaults_to_the_last_30_days_including_today(client, acme_key, usage_history):
    body = client.get(USAGE, **bearer(acme_key)).json()
    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"])
    assert end - start == timedelta(days=30)
    assert start < timezone.now() - timedelta(days=29) < timezone.now() < end
    assert body["totals"]["generations"] == 3


def test_usage_never_includes_another_tenants_jobs(client, acme_key, usage_history, globex):
    _job(account_of(globex), "g", model="flux", at=timezone.now(), charge="99", amount="99")
    body = client.get(USAGE, {"group_by": "model"}, **bearer(acme_key)).json()
    assert body["totals"]["credits_spent"] == "21.750"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "not-a-date"}, "start"),
        ({"end": "2026-02-30"}, "end"),
        ({"start": "2026-01-10", "end": "2026-01-10"}, "end"),
        ({"start": "2026-01-10", "end": "2026-01-01"}, "end"),
        ({"start": "2024-01-01", "end": "2025-01-02"}, "end"),  # 367 days
        ({"group_by": "week"}, "group_by"),
        ({"group_by": ""}, "group_by"),
        ({"start": ""}, "start"),
        ({"end": "0001-01-05"}, "end"),  # end − 30 days overflowed (500)
        ({"start": "9999-12-31"}, "start"),
        ({"end": "9999-12-31"}, "end"),
        ({"start": "0001-01-01T00:00:00+05:00", "end": "0001-01-02"}, "start"),
    ],
)
def test_usage_bad_parameters_are_a_400_naming_the_field(client, acme_key, params, field):
    before = writes()
    body = assert_problem(
        client.get(USAGE, params, **bearer(acme_key)), status=400, code="validation_error"
    )
    assert field in body["errors"]
    assert writes() == before


def test_usage_accepts_a_full_leap_year(client, acme_key):
    response = client.get(USAGE, {"start": "2024-01-01", "end": "2025-01-01"}, **bearer(acme_key))
    assert response.status_code == 200
    assert response.json()["rows"] == []


# --- Auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ALL)
def test_free_plan_api_key_is_refused_with_403(client, url):
    org = make_org(slug="freebie", plan="free")
    body = assert_problem(
        client.get(url, **bearer(new_key(org))), status=403, code="permission_denied"
    )
    assert body["reason"] == "api_access"


@pytest.mark.parametrize("url", ALL)
def test_anonymous_callers_get_401(client, url):
    assert_problem(client.get(url), status=401, code="authentication_failed")


@pytest.mark.parametrize("url", ALL)
def test_browser_session_of_a_member_works(client, acme, url):
    client.force_login(acme.memberships.get().user)
    assert client.get(url).status_code == 200


def test_session_sees_the_active_organizations_balance(client, acme, globex):
    owner = acme.memberships.get().user
    account_services.membership_ensure(organization=globex, user=owner, role="member")
    client.force_login(owner)
    session = client.session
    session["organization_id"] = globex.pk
    session.save()
    body = client.get(BALANCE).json()
    assert (body["plan"], body["balance"]) == ("creator", "2000.000")
    assert D(body["available"]) == D(2000)
