"""Staff report pages: /staff/costs/ (unit costs with charts, CSV) and /staff/pricing/ (prices
against unit costs, "Apply"). Staff only: anonymous → login, non-staff → 404. Numbers are the
report's; the chart series (infra_costs.selectors) add up to it."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from generations import services
from generations.models import AIModel, CreditRate
from generations.selectors import rate_current
from infra_costs import report as report_render
from infra_costs import selectors
from infra_costs.allocation import unit_cost_report
from infra_costs.models import NodePool, PoolRate, ScheduleSetPoint
from tests.factories import UserFactory, make_org
from tests.infra_costs.conftest import DATA, at

pytestmark = pytest.mark.django_db

COSTS = "/staff/costs/"
PRICING = "/staff/pricing/"
APPLY = "/staff/pricing/apply/"
EXAMPLE = {"start": "2026-01-05", "end": "2026-01-08"}
START, END = date(2026, 1, 5), date(2026, 1, 8)


@pytest.fixture
def example():
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    return {m.slug: m for m in AIModel.objects.filter(slug__in=["model-a", "model-b"])}


@pytest.fixture
def staff():
    return User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


# --- Access -------------------------------------------------------------------------------------

PAGES = [COSTS, f"{COSTS}models.csv", f"{COSTS}pools.csv", PRICING]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url, EXAMPLE)
    assert response.status_code == 302
    assert response.url.startswith("/login/?next=")
    assert "/staff/" in response.url


@pytest.mark.parametrize("url", PAGES)
def test_non_staff_get_404(client, url):
    org = make_org(slug="acme")
    client.force_login(org.memberships.get().user)
    assert client.get(url, EXAMPLE).status_code == 404


def test_non_staff_cannot_apply(client, example):
    client.force_login(UserFactory())
    response = client.post(
        APPLY, {"model": "model-a", "expected": "2361", "reason": "x", **EXAMPLE}
    )
    assert response.status_code == 404
    assert not CreditRate.objects.filter(model__slug="model-a").exists()
    anonymous = Client().post(APPLY, {"model": "model-a"})
    assert anonymous.status_code == 302 and anonymous.url.startswith("/login/")


def test_inactive_staff_user_is_refused(client):
    user = User.objects.create_user(email="gone@example.com", password="pw-x-12345", is_staff=True)
    client.force_login(user)
    user.is_active = False
    user.save()
    assert client.get(COSTS).status_code in (302, 404)


def test_nav_shows_staff_links_only_to_staff(client, staff):
    org = make_org(slug="acme", owner=staff)
    client.force_login(staff)
    html = client.get("/").content.decode()
    assert 'href="/staff/costs/"' in html and 'href="/staff/pricing/"' in html
    member = org.memberships.get().user
    other = make_org(slug="beta")
    client.force_login(other.memberships.get().user)
    html = client.get("/").content.decode()
    assert "/staff/costs/" not in html and "/staff/pricing/" not in html
    assert member == staff


# --- The report page -----------------------------------------------------------------------------


def test_report_page_totals_charts_and_tables(staff_client, example):
    response = staff_client.get(COSTS, EXAMPLE)
    assert response.status_code == 200
    html = response.content.decode()
    # Totals of the spec's worked example.
    assert re.search(r'data-total="infra_cost_usd"[^>]*>\$106\.80<', html)
    assert re.search(r'data-total="generations"[^>]*>3<', html)
    assert re.search(r'data-total="weighted_avg_cost_per_generation_usd"[^>]*>\$27\.60<', html)
    assert re.search(r'data-total="idle_fraction"[^>]*>97\.8%<', html)
    assert re.search(r'data-total="unattributed_usd"[^>]*>\$24\.00<', html)
    # The four charts, as inline SVG with a title and a description.
    assert html.count('data-chart="cost-per-generation"') == 1
    assert html.count('data-chart="idle-fraction"') == 1
    assert html.count('data-chart="daily"') == 2  # gpu1, gpu2
    assert html.count('data-chart="heatmap"') == 2
    assert html.count('<svg class="chart-svg"') == 6
    assert html.count("<title id=") == 6 and html.count("<desc id=") == 6
    assert 'class="bar-fully"' in html and 'class="bar-active"' in html
    assert html.count('class="bar-cost"') == 4  # gpu1 on 3 days, gpu2 on 1
    assert html.count('class="heat-') >= 2 * 3 * 24  # 2 pools × 3 days × 24 hours
    # The tables: every field of the JSON report.
    assert "$14.163158" in html and "$34.318421" in html  # cost per generation
    assert "$82.800000" in html and "$68.400000" in html and "$14.400000" in html  # gpu1
    assert "17.083333" in html and "0.916667" in html
    assert '<data value="0.949074">94.9%</data>' in html
    # Downloads for the same period.
    assert "/staff/costs/models.csv?start=2026-01-05&amp;end=2026-01-08" in html
    assert "/staff/costs/pools.csv?start=2026-01-05" in html


def test_report_page_defaults_to_last_30_days(staff_client):
    response = staff_client.get(COSTS)
    assert response.status_code == 200
    cleaned = response.context["form"].cleaned_data
    assert (cleaned["end"] - cleaned["start"]).days == 30
    assert b"No jobs finished in the period" in response.content


def test_report_page_separate_idle_policy_and_hour_windows(staff_client, example):
    response = staff_client.get(COSTS, {**EXAMPLE, "window": "hour", "idle_policy": "separate"})
    assert response.status_code == 200
    data = response.context["report"]
    assert data["period"]["windows"] == 72
    assert 'id="idle-table"' in response.content.decode()


def test_report_page_invalid_period(staff_client):
    response = staff_client.get(COSTS, {"start": "2026-01-08", "end": "2026-01-05"})
    assert response.status_code == 400
    assert b"Must be after the start" in response.content
    response = staff_client.get(COSTS, {**EXAMPLE, "timezone": "Mars/Olympus"})
    assert response.status_code == 400
    assert b"Unknown time zone" in response.content
    assert staff_client.get(f"{COSTS}models.csv", {"start": "x"}).status_code == 400
    for far in ({"start": "0001-01-01"}, {"end": "9999-12-31"}, {"start": "9999-12-30"}):
        response = staff_client.get(COSTS, {**EXAMPLE, **far})
        assert response.status_code == 400
        assert b"Use a date between 1970-01-01 and 2999-12-31." in response.content
        assert staff_client.get(f"{COSTS}models.csv", {**EXAMPLE, **far}).status_code == 400


def test_csv_downloads_match_the_json_report(staff_client, example):
    data = unit_cost_report(START, END)
    response = staff_client.get(f"{COSTS}models.csv", EXAMPLE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "unit-costs-models-2026-01-05_2026-01-08.csv" in response["Content-Disposition"]
    text = response.content.decode()
    assert text == report_render.as_csv(data)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [
        {k: ("" if v is None else str(v)) for k, v in m.items()} for m in data["models"]
    ]

    response = staff_client.get(f"{COSTS}pools.csv", EXAMPLE)
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert rows == [{k: ("" if v is None else str(v)) for k, v in p.items()} for p in data["pools"]]
    assert rows[0]["pool"] == "gpu1" and rows[0]["cost_usd"] == "82.800000"


def test_csv_for_other_options(staff_client, example):
    response = staff_client.get(
        f"{COSTS}models.csv", {**EXAMPLE, "window": "hour", "idle_policy": "separate"}
    )
    data = unit_cost_report(START, END, window="hour", idle_policy="separate")
    assert response.content.decode() == report_render.as_csv(data)
    assert "-hour-separate.csv" in response["Content-Disposition"]


# --- Chart series (selectors) --------------------------------------------------------------------


def _sums(hours):
    out = {}
    for h in hours:
        up, busy, cost = out.get(h.pool, (D(0), D(0), D(0)))
        out[h.pool] = (up + h.uptime_s, busy + h.busy_s, cost + h.cost_usd)
    return out


def _assert_add_up(hours, data):
    sums = _sums(hours)
    for p in data["pools"]:
        up, busy, cost = sums.get(p["pool"], (D(0), D(0), D(0)))
        assert abs(up / 3600 - D(p["uptime_hours"])) <= D("0.000001"), p
        assert abs(busy / 3600 - D(p["busy_hours"])) <= D("0.000001"), p
        assert abs(cost - D(p["cost_usd"])) <= D("0.000001"), p


def test_pool_hours_on_the_worked_example(example):
    hours = selectors.pool_hours(START, END)
    _assert_add_up(hours, unit_cost_report(START, END))
    days = selectors.pool_days(hours, START, END)
    gpu1 = {d.day: d for d in days["gpu1"]}
    # 01-05: n1 12 h (overlap once) + n2 1 h at 3.60; busy j1+j2+j3 (35 min) + j4's 10 min.
    assert gpu1[date(2026, 1, 5)].cost_usd == D("46.80")
    assert gpu1[date(2026, 1, 5)].uptime_hours == D(13)
    assert gpu1[date(2026, 1, 5)].busy_hours == D("0.75")
    # 01-06: n2 3 h at 7.20, j4's other 10 minutes; 01-07: n1 2 h at 7.20, idle.
    assert gpu1[date(2026, 1, 6)].cost_usd == D("21.60")
    assert gpu1[date(2026, 1, 6)].busy_hours * 6 == D(1)
    assert gpu1[date(2026, 1, 7)].cost_usd == D("14.40")
    assert gpu1[date(2026, 1, 7)].busy_hours == 0
    assert [d.cost_usd for d in days["gpu2"]] == [D(0), D(24), D(0)]

    heat = dict(selectors.idle_heatmap(hours, START, END)["gpu1"])
    day5 = heat[date(2026, 1, 5)]
    assert day5[1].uptime_hours == 1 and day5[1].idle_hours * 6 == 5  # 50 of 60 min idle
    assert day5[10].uptime_hours == 1 and day5[10].idle_fraction == 1  # overlap counted once
    assert day5[23].idle_hours * 6 == 5  # n2 23:00–24:00, j4 from 23:50
    assert day5[12].idle_fraction is None  # nobody up
    assert heat[date(2026, 1, 7)][8].idle_fraction == 1


def test_pool_hours_rate_change_inside_an_hour(db):
    pool = NodePool.objects.create(slug="p", gpu_type="X")
    PoolRate.objects.create(pool=pool, hourly_rate_usd=D(2), effective_from=at("2026-01-01"))
    PoolRate.objects.create(pool=pool, hourly_rate_usd=D(4), effective_from=at("2026-01-05 10:30"))
    from tests.infra_costs.conftest import World

    w = World()
    w.pools["p"] = pool
    w.up("n1", "2026-01-05 10:00", "2026-01-05 11:00", pool="p")
    w.job("n1", "2026-01-05 10:15", "2026-01-05 10:45")
    hours = selectors.pool_hours(date(2026, 1, 5), date(2026, 1, 6))
    assert len(hours) == 1
    assert hours[0].cost_usd == D(3)  # 30 min at 2 + 30 min at 4
    assert hours[0].busy_s == 1800
    _assert_add_up(hours, unit_cost_report(date(2026, 1, 5), date(2026, 1, 6)))


def test_pool_hours_schedule_pool_and_dst(db):
    """A pool with a schedule but no recorded uptime: its planned node-hours, as the report;
    on a DST day in Berlin (23 local hours)."""
    pool = NodePool.objects.create(slug="sched", gpu_type="L4", timezone="Europe/Berlin")
    PoolRate.objects.create(pool=pool, hourly_rate_usd=D("1.5"), effective_from=at("2026-01-01"))
    ScheduleSetPoint.objects.create(pool=pool, cron="0 8 * * *", node_count=3, timezone="UTC")
    ScheduleSetPoint.objects.create(pool=pool, cron="0 18 * * *", node_count=1, timezone="UTC")
    start, end = date(2026, 3, 28), date(2026, 3, 31)
    hours = selectors.pool_hours(start, end, timezone="Europe/Berlin")
    data = unit_cost_report(start, end, timezone="Europe/Berlin")
    _assert_add_up(hours, data)
    days = selectors.pool_days(hours, start, end)
    assert [d.day for d in days["sched"]] == [
        date(2026, 3, 28),
        date(2026, 3, 29),
        date(2026, 3, 30),
    ]
    # 29 March has 23 local hours: 1 node all day + 2 more for 10 h = 43 node-hours.
    assert days["sched"][1].uptime_hours == D(43)


def test_weekly_buckets_for_long_periods(example):
    hours = selectors.pool_hours(date(2025, 12, 1), date(2026, 3, 31))
    weeks = selectors.pool_days(hours, date(2025, 12, 1), date(2026, 3, 31), weekly=True)
    assert all(d.day.weekday() == 0 for d in weeks["gpu1"])
    assert sum(d.cost_usd for d in weeks["gpu1"]) == D("82.8")
    heat = selectors.idle_heatmap(hours, date(2025, 12, 1), date(2026, 3, 31), weekly=True)
    assert len(heat["gpu1"]) == len(weeks["gpu1"])


def test_long_period_page_renders_weekly(staff_client, example):
    response = staff_client.get(COSTS, {"start": "2025-12-01", "end": "2026-03-31"})
    assert response.status_code == 200
    assert response.context["weekly"] is True
    assert b"Weekly cost vs busy hours" in response.content


# --- The pricing page ----------------------------------------------------------------------------


def test_pricing_page_lists_models_and_flags_below_cost(staff_client, example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    services.rate_set(model=example["model-b"], credits="6000", reason="launch", actor=None)
    response = staff_client.get(PRICING, EXAMPLE)
    assert response.status_code == 200
    html = response.content.decode()
    row_a = html.split('id="model-model-a"')[1].split("</tr>")[0]
    row_b = html.split('id="model-model-b"')[1].split("</tr>")[0]
    assert 'data-flag="below-cost"' in row_a and "row-below-cost" in html
    assert 'data-flag="below-cost"' not in row_b
    assert "$14.16" in row_a and "$0.60" in row_a  # fully loaded, active
    assert "10 cr" in row_a and "2,361 cr" in row_a  # now, suggested
    assert "−14063.2%" in row_a  # margin at 10 credits: (0.10 − 14.163158) / 0.10
    assert "6,000 cr" in row_b and "5,720 cr" in row_b and "42.8%" in row_b
    assert 'name="csrfmiddlewaretoken"' in row_a and 'name="expected" value="2361.000"' in row_a
    assert 'data-testid="below-cost-alert"' in html
    assert "/admin/generations/pricingpolicy/1/change/" in html


def test_pricing_apply_creates_a_version_with_the_staff_user(staff_client, staff, example):
    services.rate_set(model=example["model-a"], credits="10", reason="launch", actor=None)
    form = {"model": "model-a", "expected": "2361.000", "reason": "Q1 review: idle included"}
    response = staff_client.post(APPLY, {**form, **EXAMPLE, "timezone": "UTC"}, follow=True)
    assert response.status_code == 200
    rate = rate_current(model=example["model-a"])
    assert rate.credits == D(2361) and rate.set_by == staff
    assert rate.reason == "Q1 review: idle included"
    assert "model-a now costs 2361 credits per generation (was 10)" in response.content.decode()
    assert response.redirect_chain[-1][0].startswith("/staff/pricing/?start=2026-01-05")
    versions = CreditRate.objects.count()

    # Again: already at the suggestion, nothing written.
    response = staff_client.post(APPLY, {**form, **EXAMPLE, "timezone": "UTC"}, follow=True)
    assert "already costs 2361 credits" in response.content.decode()
    assert CreditRate.objects.count() == versions

    # A stale suggestion (the page showed another number): refused, nothing written.
    response = staff_client.post(
        APPLY,
        {**form, "model": "model-b", "expected": "5000", **EXAMPLE, "timezone": "UTC"},
        follow=True,
    )
    assert "Nothing applied" in response.content.decode()
    assert "now 5720 credits, not 5000" in response.content.decode()
    assert CreditRate.objects.count() == versions


def test_pricing_apply_requires_a_reason_and_csrf(staff, example):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    body = {"model": "model-a", "expected": "2361", "reason": "x", **EXAMPLE, "timezone": "UTC"}
    assert client.post(APPLY, body).status_code == 403  # no CSRF token
    client = Client()
    client.force_login(staff)
    response = client.post(APPLY, {**body, "reason": "  "}, follow=True)
    assert "Nothing applied" in response.content.decode()
    assert not CreditRate.objects.filter(model__slug="model-a").exists()
    assert client.get(APPLY).status_code == 405


def test_pricing_page_invalid_period(staff_client):
    response = staff_client.get(PRICING, {"start": "2026-01-08", "end": "2026-01-05"})
    assert response.status_code == 400
    assert b"Must be after the start" in response.content
