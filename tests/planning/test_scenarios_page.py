"""The scenario planner staff page (/staff/planning/scenarios/): staff only (others 404);
evaluate shows the outputs and writes nothing; save stores the scenario (audited) and loads it;
bad input is shown as form errors with status 400 and nothing written; compare 2–4 saved
scenarios side by side with an SVG chart."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import AuditEvent, User
from planning.models import Scenario
from tests.factories import make_ai_model, make_pool
from tests.planning.test_scenarios_api import EXAMPLE

pytestmark = pytest.mark.django_db

URL = "/staff/planning/scenarios/"
COMPARE = "/staff/planning/scenarios/compare/"

FORM = {
    "mau": "10000",
    "generations_per_user": "40",
    "cache_hit_pct": "25",
    "conversion_pct": "5",
    "mix__image-fast": "80",
    "mix__video-hd": "20",
    "cost__image-fast": "0.002",
    "cost__video-hd": "0.05",
    "plan__starter": "60",
    "plan__creator": "30",
    "plan__studio": "10",
    "baseline": "Database, 250\nStorage, 120\nCDN, $80\n\nMonitoring, 50",
    "costs_start": "2026-01-01",
    "costs_end": "2026-01-31",
}


@pytest.fixture
def staff(client):
    pool = make_pool()
    make_ai_model("image-fast", pool=pool)
    make_ai_model("video-hd", pool=pool)
    user = User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    client.force_login(user)
    client.user = user
    return client


def test_reverse_and_nav_link(staff):
    assert reverse("planning:scenarios") == URL
    assert reverse("planning:scenarios_compare") == COMPARE
    page = staff.get(URL).content.decode()
    assert f'href="{URL}" aria-current="page"' in page
    assert 'name="mix__image-fast"' in page and 'name="plan__studio"' in page


def test_not_for_customers(client):
    assert client.get(URL).status_code == 302  # anonymous → login
    user = User.objects.create_user(email="c@example.com", password="pw-c-12345")
    client.force_login(user)
    assert client.get(URL).status_code == 404
    assert client.post(URL, {**FORM, "action": "save", "name": "x"}).status_code == 404
    assert client.get(COMPARE, {"ids": [1, 2]}).status_code == 404
    assert Scenario.objects.count() == 0


def test_evaluate_shows_the_worked_example_and_saves_nothing(staff):
    response = staff.post(URL, {**FORM, "action": "evaluate"})
    assert response.status_code == 200
    out = response.context["outputs"]
    assert out["totals"]["total_cost_usd"] == "3980.000000"
    assert out["totals"]["baseline_usd"] == "500.000000"
    assert out["totals"]["break_even_paid_users"] == 30
    page = response.content.decode()
    assert 'data-total="gross_margin_usd" title="8020.000000 USD">$8,020.00<' in page
    assert page.count('data-chart="cost-revenue"') == 1
    assert page.count("bar-scenario-cost") == 7  # as entered + 6 sensitivity cases
    assert Scenario.objects.count() == 0


def test_save_then_load(staff):
    response = staff.post(URL, {**FORM, "action": "save", "name": "Launch plan"})
    scenario = Scenario.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{URL}?load={scenario.pk}"
    assert scenario.created_by == staff.user
    assert scenario.inputs["baseline"][2] == {"name": "CDN", "monthly_usd": "80"}
    assert (
        AuditEvent.objects.filter(action="planning.scenario_created", actor=staff.user).count() == 1
    )
    page = staff.get(response["Location"])
    assert page.status_code == 200
    assert page.context["outputs"]["totals"]["gross_margin_usd"] == "8020.000000"
    assert page.context["form"].initial["mix__video-hd"] == "20"
    assert "Launch plan" in page.content.decode()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"mau": "-1"}, "mau"),
        ({"mau": "9" * 30}, "mau"),
        ({"conversion_pct": "abc"}, "conversion_pct"),
        ({"mix__video-hd": "30"}, "model_mix"),
        ({"plan__studio": "0"}, "plan_mix"),
        ({"baseline": "just a name"}, "baseline"),
        ({"baseline": "DB, -3"}, "baseline"),
        ({"costs_end": "2025-01-01"}, "costs_end"),
        ({"cost__video-hd": "-0.1"}, "cost_overrides"),
        ({"mau": "1\x00"}, "mau"),
    ],
)
def test_bad_input_is_a_form_error_and_writes_nothing(staff, change, where):
    for action in ("evaluate", "save"):
        response = staff.post(URL, {**FORM, **change, "action": action, "name": "n"})
        assert response.status_code == 400
        form = response.context["form"]
        assert where in form.errors or where in form.group_errors, (form.errors, form.group_errors)
        assert response.context["outputs"] is None
    assert Scenario.objects.count() == 0


def test_save_without_a_name_is_a_form_error(staff):
    response = staff.post(URL, {**FORM, "action": "save", "name": ""})
    assert response.status_code == 400
    assert "name" in response.context["form"].errors
    assert Scenario.objects.count() == 0


def test_unknown_saved_scenario(staff):
    assert staff.get(URL, {"load": "999"}).status_code == 404
    assert staff.get(URL, {"load": "x"}).status_code == 404


def _saved(name, **changes):
    return Scenario.objects.create(name=name, inputs={**EXAMPLE, **changes})


def test_compare_side_by_side(staff):
    a = _saved("Base")
    b = _saved("Twice the users", mau=20000)
    c = _saved("Poor conversion", conversion_pct="0.5")
    response = staff.get(COMPARE, {"ids": [a.pk, b.pk, c.pk]})
    assert response.status_code == 200
    columns = response.context["columns"]
    assert [col["scenario"].name for col in columns] == [
        "Base",
        "Twice the users",
        "Poor conversion",
    ]
    rows = {r["key"]: r["cells"] for r in response.context["rows"]}
    assert rows["total_cost_usd"] == ["3980.000000", "7460.000000", "3980.000000"]
    assert rows["revenue_usd"] == ["12000.000000", "24000.000000", "1200.000000"]
    assert rows["break_even_paid_users"] == [30, 30, None]
    page = response.content.decode()
    assert page.count("bar-scenario-revenue") == 3
    assert "never" in page


@pytest.mark.parametrize("ids", [[], ["1"], ["1", "2", "3", "4", "5"], ["x", "y"], ["999", "998"]])
def test_compare_needs_2_to_4_saved_scenarios(staff, ids):
    for i in range(1, 6):
        Scenario.objects.create(pk=i, name=f"s{i}", inputs=EXAMPLE)
    response = staff.get(COMPARE, {"ids": ids})
    assert response.status_code == 400
    assert response.context["form"].errors
