"""Accounts endpoints of API v1: /organization/ and /api-keys/, scoped to the caller's org."""

from __future__ import annotations

import pytest

from accounts import services
from accounts.models import Plan
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_org

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"
KEYS_URL = "/api/v1/api-keys/"


def new_key(org, name="k"):
    return services.api_key_create(organization=org, name=name, actor=None)


@pytest.fixture
def acme():
    return make_org(slug="acme", name="Acme Inc", plan="creator")


@pytest.fixture
def globex():
    return make_org(slug="globex", name="Globex", plan="studio")


def test_organization_shows_plan_and_current_period(client, acme):
    _, raw = new_key(acme)
    response = client.get(ORG_URL, **bearer(raw))
    assert response.status_code == 200
    body = response.json()
    sub = acme.subscription
    assert body["slug"] == "acme"
    assert body["name"] == "Acme Inc"
    assert body["plan"] == {
        "slug": "creator",
        "name": "Creator",
        "monthly_price_usd": "29.00",
        "monthly_credits": "2000.000",
        "overage_enabled": True,
        "overage_cap": "2000.000",
        "overage_price_usd": "0.018000",
        "daily_generation_cap": None,
        "max_concurrent_jobs": 4,
        "api_rate_limit_per_min": 600,
        "queue_priority": "high",
        "api_access": True,
        "entitlements": {
            "api_access": True,
            "models_allowed": None,
            "max_megapixels": None,
            "max_duration_s": None,
            "max_batch_size": None,
            "watermark": False,
            "priority": "high",
        },
    }
    assert body["subscription"]["status"] == "active"
    assert body["subscription"]["cancel_at_period_end"] is False
    assert body["subscription"]["current_period_start"].startswith(
        sub.current_period_start.date().isoformat()
    )
    assert body["subscription"]["current_period_end"].startswith(
        sub.current_period_end.date().isoformat()
    )


def test_each_key_only_sees_its_own_organization(client, acme, globex):
    _, acme_raw = new_key(acme)
    _, globex_raw = new_key(globex)
    assert client.get(ORG_URL, **bearer(acme_raw)).json()["slug"] == "acme"
    assert client.get(ORG_URL, **bearer(globex_raw)).json()["slug"] == "globex"


def test_key_list_never_includes_another_tenants_keys(client, acme, globex):
    acme_keys = [new_key(acme, f"a{i}")[0] for i in range(2)]
    reader, acme_raw = new_key(acme, "reader")
    globex_key, globex_raw = new_key(globex, "g")
    ids = [row["id"] for row in client.get(KEYS_URL, **bearer(acme_raw)).json()["results"]]
    assert sorted(ids) == sorted([*(k.pk for k in acme_keys), reader.pk])
    assert globex_key.pk not in ids
    globex_ids = [r["id"] for r in client.get(KEYS_URL, **bearer(globex_raw)).json()["results"]]
    assert globex_ids == [globex_key.pk]


def test_key_list_shows_metadata_but_never_the_secret_or_hash(client, acme):
    key, raw = new_key(acme, "ci")
    row = client.get(KEYS_URL, **bearer(raw)).json()["results"][0]
    assert set(row) == {
        "id",
        "name",
        "prefix",
        "is_active",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert row["prefix"] == key.prefix
    assert row["is_active"] is True
    assert row["revoked_at"] is None
    assert row["last_used_at"] is not None  # this very request used it
    text = client.get(KEYS_URL, **bearer(raw)).content.decode()
    assert key.hashed_key not in text
    assert raw.split("_", 2)[2] not in text


def test_key_list_includes_revoked_keys(client, acme):
    old, _ = new_key(acme, "old")
    services.api_key_revoke(api_key=old, actor=None)
    _, raw = new_key(acme, "new")
    rows = client.get(KEYS_URL, **bearer(raw)).json()["results"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["old"]["is_active"] is False
    assert by_name["old"]["revoked_at"] is not None


def test_key_list_is_cursor_paginated_newest_first(client, acme):
    created = [new_key(acme, f"k{i}")[0] for i in range(5)]
    _, raw = new_key(acme, "reader")
    newest_first = [acme.api_keys.get(name="reader").pk, *[k.pk for k in reversed(created)]]
    seen, url, pages = [], KEYS_URL + "?page_size=2", 0
    while url:
        body = client.get(url, **bearer(raw)).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 2
        seen += [r["id"] for r in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == newest_first
    assert pages == 3


def test_free_plan_key_is_refused_with_403(client):
    org = make_org(slug="freebie", plan="free")
    _, raw = new_key(org)
    body = assert_problem(client.get(ORG_URL, **bearer(raw)), status=403, code="permission_denied")
    assert "API access" in body["detail"]
    assert_problem(client.get(KEYS_URL, **bearer(raw)), status=403, code="permission_denied")


def test_plan_without_api_access_flag_is_refused(client, acme):
    Plan.objects.filter(slug="creator").update(api_access=False)
    _, raw = new_key(acme)
    assert_problem(client.get(ORG_URL, **bearer(raw)), status=403, code="permission_denied")


def test_session_member_of_two_orgs_sees_the_active_one(client, acme, globex):
    owner = acme.memberships.get().user
    services.membership_ensure(organization=globex, user=owner, role="member")
    client.force_login(owner)
    session = client.session
    session["organization_id"] = globex.pk
    session.save()
    assert client.get(ORG_URL).json()["slug"] == "globex"
    keys = client.get(KEYS_URL).json()["results"]
    assert keys == []
