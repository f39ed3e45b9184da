"""The staff page /staff/planning/pools/: staff only, both tables and both SVG charts on the demo
world, the figures of `planning.pool_economics`, and bad input as form errors (never a 500)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from infra_costs.forms import today_utc
from planning.pool_economics import pool_economics
from tests.factories import make_pool

pytestmark = pytest.mark.django_db
URL = "/staff/planning/pools/"


@pytest.fixture
def staff(client):
    user = User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def demo():
    from generations.demo import seed_world

    seed_world(days=14, seed=1)


def test_route_and_nav_link(staff, client):
    assert reverse("planning:pools") == URL
    page = client.get(URL).content.decode()
    assert f'href="{URL}" aria-current="page"' in page


def test_anonymous_is_sent_to_log_in_and_non_staff_get_404(client):
    assert client.get(URL).status_code == 302
    client.force_login(User.objects.create_user(email="u@example.com", password="pw-u-12345"))
    assert client.get(URL).status_code == 404


def test_without_pools_the_page_says_so(staff, client):
    response = client.get(URL)
    assert response.status_code == 200
    assert "No GPU pool yet" in response.content.decode()


def test_demo_world_tables_charts_and_figures(staff, client, demo):
    response = client.get(URL, {"days": 14, "pool": "a100"})
    assert response.status_code == 200
    page = response.content.decode()
    end = today_utc()
    econ = next(
        e
        for e in pool_economics(start=end - timedelta(days=14), end=end, now=timezone.now())
        if e.pool.slug == "a100"
    )
    assert response.context["econ"].rows == econ.rows
    for table in ("pools-summary", "service-times", "utilization-table", "rent-buy"):
        assert f'id="{table}"' in page, table
    assert page.count('<tr data-pool="') == 2  # a100 and l4 in the summary
    assert page.count("data-utilization=") == 6  # 5 levels + measured
    assert 'data-measured="true"' in page
    for chart in ("cost-curve", "rent-buy"):
        assert f'data-chart="{chart}"' in page
    assert page.count("<polyline") == 3 + 2  # mix + 2 models; rent + own
    assert "http" not in page.split('data-chart="cost-curve"')[1].split("</figure>")[0].replace(
        "http://www.w3.org/2000/svg", ""
    )
    # The demo is about half idle; a100 needs more than one node at its peak hour.
    assert Decimal("0.3") < econ.measured_utilization < Decimal("0.7")
    assert econ.nodes_needed >= 2
    assert f'data-nodes="{econ.nodes_needed}"' in page
    rb = response.context["rb"]
    assert rb.inputs.nodes == 4  # the a100 nodes that ran in the period
    assert f'data-own="{rb.own_month_usd}"' in page
    assert f'data-break-even="{rb.break_even}"' in page


def test_demand_and_owning_inputs_change_the_figures(staff, client, demo):
    base = {"days": 14, "pool": "l4"}
    low = client.get(URL, {**base, "demand": "1"}).context["econ"]
    high = client.get(URL, {**base, "demand": "5000"}).context["econ"]
    assert low.nodes_needed == 1 and high.nodes_needed > 10
    assert not high.demand_is_measured
    cheap = client.get(URL, {**base, "cards_usd": "1000", "server_usd": "0", "nodes": "1"})
    dear = client.get(URL, {**base, "cards_usd": "900000", "nodes": "1"})
    assert cheap.context["rb"].own_month_usd < dear.context["rb"].own_month_usd
    assert cheap.context["rb"].inputs.nodes == 1


@pytest.mark.parametrize(
    "params, field",
    [
        ({"days": "-3"}, "days"),
        ({"days": "0"}, "days"),
        ({"days": "99999999999999999999999"}, "days"),
        ({"days": "1\x00"}, "days"),
        ({"pool": "nope"}, "pool"),
        ({"pool": "a100\x00"}, "pool"),
        ({"demand": "-1"}, "demand"),
        ({"demand": "1e999"}, "demand"),
        ({"demand": "NaN"}, "demand"),
        ({"demand": "\x00"}, "demand"),
        ({"cards_usd": "-5"}, "cards_usd"),
        ({"cards_usd": "9" * 400}, "cards_usd"),
        ({"server_usd": "Infinity"}, "server_usd"),
        ({"depreciation_months": "0"}, "depreciation_months"),
        ({"power_kw": "1.23456"}, "power_kw"),
        ({"power_usd_per_kwh": "abc"}, "power_usd_per_kwh"),
        ({"hosting_usd_month": "1e9"}, "hosting_usd_month"),
        ({"nodes": "0"}, "nodes"),
        ({"nodes": "2.5"}, "nodes"),
    ],
)
def test_bad_input_is_a_form_error(staff, client, params, field):
    make_pool("a100")
    response = client.get(URL, {"pool": "a100", **params})
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors
    page = response.content.decode()
    assert 'class="field-error"' in page
    assert "\x00" not in page
    assert "data-chart=" not in page
