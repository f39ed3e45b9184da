"""Row-level security applied to requests (accounts.tenancy.tenant_scoped on the API's and the
web pages' reads): even a selector that forgot its organization filter returns only the
caller's rows, and the request's scope does not outlive it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from accounts import services as account_services
from generations import selectors, services
from generations.models import Job
from tests.config.helpers import bearer
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def tenants():
    make_ai_model("sdxl", credits="5")
    acme, globex = make_org(slug="acme", plan="studio"), make_org(slug="globex", plan="studio")
    for org in (acme, globex):
        services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": org.slug, "seed": 1}
        )
    return acme, globex


@pytest.fixture
def forgetful_selector(monkeypatch):
    """A job list that forgot `filter(organization=...)`: the bug RLS is the net for."""

    def job_list(*, organization, status=None, model=None):
        return Job.objects.all().order_by("-created_at", "-id")

    monkeypatch.setattr(selectors, "job_list", job_list)


def db_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def test_an_unscoped_query_in_an_api_request_sees_only_the_callers_rows(
    client, tenants, forgetful_selector
):
    acme, _ = tenants
    raw = account_services.api_key_create(organization=acme, name="k", actor=None)[1]
    user = db_user()
    assert selectors.job_list(organization=acme).count() == 2  # the bug, outside a request

    response = client.get("/api/v1/generations/", **bearer(raw))

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {str(job.pk) for job in Job.objects.filter(organization=acme)}
    # the request's scope ended with it: this connection is unrestricted again
    assert db_user() == user
    assert Job.objects.count() == 2


def test_another_tenants_job_is_not_found_even_by_an_unscoped_lookup(client, tenants, monkeypatch):
    acme, globex = tenants
    raw = account_services.api_key_create(organization=acme, name="k", actor=None)[1]
    theirs = Job.objects.get(organization=globex)
    real = selectors.job_get
    monkeypatch.setattr(
        selectors,
        "job_get",
        lambda *, organization, job_id: real(organization=globex, job_id=job_id),
    )

    response = client.get(f"/api/v1/generations/{theirs.pk}/", **bearer(raw))

    assert response.status_code == 404


def test_an_unscoped_query_in_a_web_page_sees_only_the_active_organizations_rows(
    client, tenants, forgetful_selector
):
    acme, globex = tenants
    client.force_login(acme.memberships.get().user)

    page = client.get(reverse("generations:jobs")).content.decode()

    assert str(Job.objects.get(organization=acme).pk) in page
    assert str(Job.objects.get(organization=globex).pk) not in page


def test_submissions_are_not_run_in_the_tenant_role(client, tenants):
    """Writes go through the services as before (only reads are scoped)."""
    acme, _ = tenants
    raw = account_services.api_key_create(organization=acme, name="k", actor=None)[1]

    response = client.post(
        "/api/v1/generations/",
        {"model": "sdxl", "params": {"prompt": "again", "seed": 2}},
        content_type="application/json",
        **bearer(raw),
    )

    assert response.status_code == 202
    assert Job.objects.filter(organization=acme).count() == 2
