"""Budgets and teams over HTTP: /api/v1/budgets/, /api/v1/teams/, the budgets in
/api/v1/quotas/, the `limit` a refused submission names in its problem details, and the budgets
page (/credits/budgets/)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from accounts import services as account_services
from accounts import teams
from accounts.models import APIKey, AuditEvent, Plan
from credits.budgets import services as budgets
from credits.budgets.models import Budget
from tests.config.helpers import assert_problem, bearer
from tests.factories import add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db

BUDGETS = "/api/v1/budgets/"
TEAMS = "/api/v1/teams/"
PAGE = "/credits/budgets/"


@pytest.fixture
def acme():
    org = make_org(slug="acme", plan="studio")
    Plan.objects.filter(slug="studio").update(max_concurrent_jobs=None)
    return org


@pytest.fixture
def owner(acme):
    return acme.memberships.get().user


@pytest.fixture
def raw_key(acme, owner):
    return account_services.api_key_create(organization=acme, name="ci", actor=owner)[1]


@pytest.fixture
def key(raw_key):
    return APIKey.objects.get()


def post(client, url, body, **headers):
    return client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def test_a_refused_submission_names_the_budget_with_its_value_use_and_reset(
    client, acme, owner, key, raw_key
):
    make_ai_model("sdxl", credits="5")
    budgets.budget_create(
        organization=acme, actor=owner, scope="key", api_key=key, period="day", amount="5"
    )
    body = {"model": "sdxl", "params": {"prompt": "a cat"}}
    assert post(client, "/api/v1/generations/", body, **bearer(raw_key)).status_code == 202

    refused = post(client, "/api/v1/generations/", body, **bearer(raw_key))

    problem = assert_problem(refused, status=429, code="quota_exceeded")
    assert problem["limit"] == f"budget:key:{key.prefix}"
    assert (problem["limit_value"], problem["used"], problem["reserved"]) == (
        "5.000",
        "0.000",
        "5.000",
    )
    assert problem["resets_at"].endswith("T00:00:00Z")

    quotas = client.get("/api/v1/quotas/", **bearer(raw_key)).json()
    assert [b["limit"] for b in quotas["budgets"]] == [f"budget:key:{key.prefix}"]
    assert quotas["budgets"][0]["reserved"] == "5.000"


def test_owners_create_change_and_delete_budgets_and_keys_only_read(
    client, acme, owner, key, raw_key
):
    client.force_login(owner)
    created = post(
        client,
        BUDGETS,
        {"scope": "key", "api_key": key.prefix, "period": "week", "amount": "100"},
    )
    assert created.status_code == 201, created.content
    budget = created.json()
    assert (budget["limit"], budget["limit_value"], budget["period"]) == (
        f"budget:key:{key.prefix}",
        "100.000",
        "week",
    )
    url = f"{BUDGETS}{budget['id']}/"
    changed = client.patch(
        url, data=json.dumps({"amount": "50", "alert_percent": 90}), content_type="application/json"
    )
    assert (changed.json()["limit_value"], changed.json()["alert_percent"]) == ("50.000", 90)

    client.logout()
    assert client.get(BUDGETS, **bearer(raw_key)).json()["results"][0]["id"] == budget["id"]
    refused = client.delete(url, **bearer(raw_key))
    assert_problem(refused, status=403, code="permission_denied")

    client.force_login(owner)
    assert client.delete(url).status_code == 204
    assert not Budget.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="budget.").count() == 3


def test_a_member_sees_only_their_budgets_and_cannot_change_any(client, acme, owner, key):
    member = add_member(acme).user
    budgets.budget_create(
        organization=acme, actor=owner, scope="key", api_key=key, period="day", amount="5"
    )
    mine = budgets.budget_create(
        organization=acme, actor=owner, scope="member", user=member, period="day", amount="5"
    )
    client.force_login(member)
    assert [b["id"] for b in client.get(BUDGETS).json()["results"]] == [mine.pk]
    refused = post(
        client, BUDGETS, {"scope": "member", "member": member.pk, "period": "day", "amount": "9"}
    )
    assert_problem(refused, status=403, code="permission_denied")


def test_bad_input_is_a_400_that_writes_nothing(client, acme, owner, key):
    client.force_login(owner)
    for body in (
        {"scope": "key", "api_key": key.prefix, "period": "day", "amount": "-1"},
        {"scope": "key", "api_key": key.prefix, "period": "year", "amount": "1"},
        {"scope": "key", "api_key": "nope", "period": "day", "amount": "1"},
        {"scope": "team", "period": "day", "amount": "1"},
        {"scope": "key", "api_key": key.prefix, "period": "day", "amount": "1", "alert_percent": 0},
    ):
        assert_problem(post(client, BUDGETS, body), status=400, code="validation_error")
    budgets.budget_create(
        organization=acme, actor=owner, scope="key", api_key=key, period="day", amount="5"
    )
    again = post(
        client, BUDGETS, {"scope": "key", "api_key": key.prefix, "period": "day", "amount": "1"}
    )
    assert_problem(again, status=400, code="validation_error")
    assert Budget.objects.count() == 1


def test_another_organizations_budgets_and_teams_are_404(client, acme, owner, key):
    budget = budgets.budget_create(
        organization=acme, actor=owner, scope="key", api_key=key, period="day", amount="5"
    )
    teams.team_create(organization=acme, name="Design", actor=owner)
    globex = make_org(slug="globex", plan="studio")
    client.force_login(globex.memberships.get().user)
    assert_problem(client.get(f"{BUDGETS}{budget.pk}/"), status=404, code="not_found")
    assert_problem(client.delete(f"{BUDGETS}{budget.pk}/"), status=404, code="not_found")
    assert_problem(client.get(f"{TEAMS}design/"), status=404, code="not_found")
    assert client.get(BUDGETS).json()["results"] == []
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_teams_are_created_and_staffed_over_the_api(client, acme, owner):
    member = add_member(acme).user
    client.force_login(owner)
    created = post(client, TEAMS, {"name": "Design Team"})
    assert created.status_code == 201, created.content
    assert created.json()["slug"] == "design-team"
    added = post(client, f"{TEAMS}design-team/members/", {"user": member.pk})
    assert [m["id"] for m in added.json()["members"]] == [member.pk]
    stranger = make_org(slug="globex").memberships.get().user
    unknown = post(client, f"{TEAMS}design-team/members/", {"user": stranger.pk})
    assert_problem(unknown, status=404, code="not_found")
    assert client.delete(f"{TEAMS}design-team/members/{member.pk}/").status_code == 204
    assert client.get(TEAMS).json()["results"][0]["members"] == []


def test_the_budgets_page_adds_a_team_budget_and_shows_its_use(client, acme, owner):
    team = teams.team_create(organization=acme, name="Design", actor=owner)
    client.force_login(owner)
    response = client.post(
        PAGE,
        {"target": f"team:{team.pk}", "period": "month", "amount": "250", "alert_percent": "80"},
    )
    assert response.status_code == 302, response.content
    page = client.get(PAGE).content.decode()
    assert "budget:team:design" in page and "The team “Design” budget" in page

    bad = client.post(PAGE, {"target": f"team:{team.pk}", "period": "month", "amount": "0"})
    assert bad.status_code == 200 and Budget.objects.count() == 1


def test_members_see_their_budgets_on_the_page_and_cannot_post(client, acme, owner):
    member = add_member(acme).user
    budgets.budget_create(
        organization=acme, actor=owner, scope="member", user=member, period="day", amount="5"
    )
    client.force_login(member)
    page = client.get(PAGE).content.decode()
    assert "Your budgets" in page and f"budget:member:{member.pk}" in page
    assert "Add a budget" not in page
    assert client.post(PAGE, {"target": f"member:{member.pk}", "amount": "9"}).status_code == 403
    assert client.post(reverse("credits:team_create"), {"name": "x"}).status_code == 403


def test_staff_change_a_budget_in_the_admin_and_its_use_is_read_only(
    admin_client, acme, owner, key
):
    budget = budgets.budget_create(
        organization=acme, actor=owner, scope="key", api_key=key, period="day", amount="5"
    )
    url = reverse("admin:credits_budget_change", args=[budget.pk])
    assert admin_client.get(reverse("admin:credits_budget_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:accounts_team_changelist")).status_code == 200
    page = admin_client.get(url)
    assert page.status_code == 200
    response = admin_client.post(
        url,
        {
            "period": "week",
            "amount": "25",
            "alert_percent": "",
            "reservations-TOTAL_FORMS": "0",
            "reservations-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    budget.refresh_from_db()
    assert (budget.period, budget.amount, budget.used, budget.reserved) == ("week", 25, 0, 0)
    assert AuditEvent.objects.filter(action="budget.updated").exists()
