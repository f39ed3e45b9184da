"""The staff landing page /staff/ (operations.views.staff_home, generations.staff_overview): fleet,
the last 30 days' costs, prices with models below cost flagged, and alerts; staff without an
organization land there after logging in; every staff page links to it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounts.models import User
from generations import services
from generations.models import AIModel
from generations.staff_overview import staff_overview
from tests.factories import make_org
from tests.infra_costs.conftest import DATA

pytestmark = pytest.mark.django_db

HOME = "/staff/"
AFTER_EXAMPLE = datetime(2026, 1, 20, 12, tzinfo=UTC)  # the example's days are in its 30


@pytest.fixture
def example():
    for kind in ("pools", "uptime", "jobs"):
        call_command(f"import_{kind}", str(DATA / f"{kind}.csv"), stdout=io.StringIO())
    models = {m.slug: m for m in AIModel.objects.filter(slug__in=["model-a", "model-b"])}
    since = datetime(2026, 1, 1, tzinfo=UTC)
    for slug, credits in (("model-a", "10"), ("model-b", "6000")):
        services.rate_set(
            model=models[slug], credits=credits, reason="launch", actor=None, effective_from=since
        )
    AIModel.objects.filter(slug="model-a").update(name="Model A")
    return models


@pytest.fixture
def staff():
    return User.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)


@pytest.fixture
def at_example(monkeypatch):
    """The page computes "the last 30 days" from now: make now just after the example."""
    monkeypatch.setattr("generations.staff_overview.timezone.now", lambda: AFTER_EXAMPLE)


def test_anonymous_is_sent_to_login_and_customers_get_404(client):
    response = client.get(HOME)
    assert response.status_code == 302 and response.url.startswith("/login/?next=/staff/")
    org = make_org(slug="acme")
    client.force_login(org.memberships.get().user)
    assert client.get(HOME).status_code == 404


def test_overview_figures_are_the_reports(example):
    o = staff_overview(now=AFTER_EXAMPLE)
    assert (o.start.isoformat(), o.end.isoformat()) == ("2025-12-21", "2026-01-20")
    assert o.generations > 0
    assert o.infra_cost_usd > 0
    assert o.idle_fraction is not None and D(0) <= o.idle_fraction <= D(1)
    assert o.cost_per_generation_usd is not None
    assert [r.model for r in o.below_cost] == ["model-a"]
    pools = {p.fleet.slug: p for p in o.pools}
    assert set(pools) == {"gpu1", "gpu2"}
    assert pools["gpu1"].fleet.hourly_rate_usd == D("7.20")  # the rate in force now
    assert pools["gpu2"].fleet.hourly_rate_usd == D("1.00")
    texts = [a.text for a in o.alerts]
    assert any(t.startswith("1 model sold below cost: Model A") for t in texts), texts


def test_page_shows_fleet_costs_prices_and_alerts(client, staff, example, at_example):
    client.force_login(staff)
    response = client.get(HOME)
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("staff-alerts", "staff-costs", "staff-fleet", "staff-prices"):
        assert f'data-testid="{section}"' in html
    assert 'id="pool-gpu1"' in html and "$7.20" in html
    row_a = html.split('id="price-model-a"')[1].split("</tr>")[0]
    row_b = html.split('id="price-model-b"')[1].split("</tr>")[0]
    assert "Model A" in row_a and "below cost" in row_a
    assert "below cost" not in row_b
    assert "1 model sold below cost: Model A" in html
    # Links on to the detailed pages, and the staff nav marks this page.
    assert reverse("staff_costs:index") in html and reverse("staff_pricing:index") in html
    assert f'<a href="{HOME}" aria-current="page">Overview</a>' in html


def test_page_without_any_data_renders(client, staff, settings):
    settings.STRIPE_SECRET_KEY = ""
    client.force_login(staff)
    response = client.get(HOME)
    assert response.status_code == 200
    html = response.content.decode()
    assert "No node pools yet" in html
    assert "Stripe is not configured" in html


def test_staff_without_an_organization_land_on_the_overview_after_login(client, staff):
    response = client.post(
        reverse("login"), {"username": staff.email, "password": "pw-ops-123"}, follow=True
    )
    assert response.redirect_chain[-1][0] == HOME
    assert response.status_code == 200
    assert "You are not in any organization" not in response.content.decode()


def test_the_no_organization_page_links_staff_to_the_overview(client, staff):
    client.force_login(staff)
    html = client.get(reverse("organization_create")).content.decode()
    assert 'data-testid="staff-overview-link"' in html and f'href="{HOME}"' in html
    customer = User.objects.create_user(email="new@example.com", password="pw-new-12345")
    client.force_login(customer)
    html = client.get(reverse("organization_create")).content.decode()
    assert 'data-testid="staff-overview-link"' not in html
    # Customers without an organization still go to create one.
    assert client.get(reverse("dashboard")).url == reverse("organization_create")


@pytest.mark.parametrize(
    "page", ["/staff/costs/", "/staff/pricing/", "/admin/", "/admin/generations/aimodel/"]
)
def test_every_staff_page_links_to_the_overview(client, page):
    admin = User.objects.create_superuser(email="root@example.com", password="pw-root-123")
    client.force_login(admin)
    html = client.get(page).content.decode()
    assert f'href="{HOME}"' in html


def test_staff_in_an_organization_see_it_in_the_main_nav(client, staff):
    make_org(slug="acme", owner=staff)
    client.force_login(staff)
    html = client.get(reverse("dashboard")).content.decode()
    assert f'<a href="{HOME}"' in html
