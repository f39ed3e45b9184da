"""The staff pages' banner while `make run` generates the demo history in the background
(generations.context_processors.demo_history, generations.demo.history_pending)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.models import User
from generations.demo import seed_world
from infra_costs.models import GpuRun

pytestmark = pytest.mark.django_db

STAFF_PAGES = ["/staff/", "/staff/costs/", "/staff/pricing/"]
BANNER = "demo-history-pending"


@pytest.fixture
def staff_client(client):
    staff = User.objects.create_user(email="ops@example.com", password="x", is_staff=True)
    client.force_login(staff)
    return client


def test_staff_pages_show_the_banner_while_the_history_is_incomplete_and_not_after(staff_client):
    seed_world(days=2, seed=5, history=False)  # the catalog, as `seed_demo --no-history`
    for page in STAFF_PAGES:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        assert BANNER in response.content.decode(), page

    seed_world(days=2, seed=5)  # the history, as `seed_demo --history-only`
    for page in STAFF_PAGES:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        assert BANNER not in response.content.decode(), page


def test_no_banner_without_a_demo(staff_client):
    assert BANNER not in staff_client.get("/staff/").content.decode()


def test_seed_demo_split_no_history_then_history_only():
    out = io.StringIO()
    call_command("seed_demo", "--days", "2", "--no-history", stdout=out)
    assert "not yet generated" in out.getvalue()
    assert not GpuRun.objects.exists()
    out = io.StringIO()
    call_command("seed_demo", "--days", "2", "--history-only", stdout=out)
    assert "complete:" in out.getvalue() and GpuRun.objects.exists()
    out = io.StringIO()
    call_command("seed_demo", "--days", "2", "--history-only", stdout=out)
    assert "already present" in out.getvalue()
