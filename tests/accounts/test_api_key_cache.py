"""The API key cache (accounts/keycache.py): a used key is found without PostgreSQL, and
whatever changes it — revocation, a plan change, a plan edited — takes effect on the very
next request."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services
from accounts.models import APIKey, Plan
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_org

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"


@pytest.fixture
def org():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def key(org):
    return services.api_key_create(organization=org, name="ci", actor=None)


def key_lookups(client, raw) -> tuple[int, int]:
    """(status, number of queries on the API key table) of one request."""
    with CaptureQueriesContext(connection) as ctx:
        status = client.get(ORG_URL, **bearer(raw)).status_code
    table = APIKey._meta.db_table
    return status, sum(f'FROM "{table}"' in q["sql"] for q in ctx.captured_queries)


def test_a_used_key_is_found_without_a_query(client, key):
    _, raw = key
    assert key_lookups(client, raw) == (200, 1)
    assert key_lookups(client, raw) == (200, 0)
    assert key_lookups(client, raw) == (200, 0)


def test_a_revoked_key_is_refused_on_the_next_request(client, key):
    api_key, raw = key
    assert key_lookups(client, raw) == (200, 1)
    assert key_lookups(client, raw) == (200, 0)  # cached

    services.api_key_revoke(api_key=api_key, actor=None)

    assert_problem(client.get(ORG_URL, **bearer(raw)), status=401, code="authentication_failed")


def test_revoking_one_key_leaves_the_others_working(client, org, key):
    api_key, raw = key
    _, other = services.api_key_create(organization=org, name="other", actor=None)
    client.get(ORG_URL, **bearer(raw))
    client.get(ORG_URL, **bearer(other))
    services.api_key_revoke(api_key=api_key, actor=None)
    assert client.get(ORG_URL, **bearer(other)).status_code == 200
    assert client.get(ORG_URL, **bearer(raw)).status_code == 401


def test_a_plan_change_applies_on_the_next_request(client, org, key):
    _, raw = key
    assert client.get(ORG_URL, **bearer(raw)).json()["plan"]["slug"] == "studio"
    assert key_lookups(client, raw) == (200, 0)

    services.subscription_start(organization=org, plan=Plan.objects.get(slug="starter"))

    assert client.get(ORG_URL, **bearer(raw)).json()["plan"]["slug"] == "starter"


def test_a_plan_edited_by_staff_applies_on_the_next_request(client, key):
    _, raw = key
    assert client.get(ORG_URL, **bearer(raw)).status_code == 200  # counted, and cached
    plan = Plan.objects.get(slug="studio")
    plan.api_rate_limit_per_min = 1
    plan.save()  # as the admin does

    # The second request of the minute is over the new limit (the cached plan allowed it).
    assert_problem(client.get(ORG_URL, **bearer(raw)), status=429, code="rate_limited")


def test_a_wrong_secret_is_refused_even_when_the_key_is_cached(client, key):
    api_key, raw = key
    assert client.get(ORG_URL, **bearer(raw)).status_code == 200
    forged = f"gpuc_{api_key.prefix}_{'x' * 43}"
    assert_problem(client.get(ORG_URL, **bearer(forged)), status=401, code="authentication_failed")


def test_a_busy_key_writes_last_used_at_once_per_resolution(client, key):
    api_key, raw = key
    table = APIKey._meta.db_table
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(5):
            assert client.get(ORG_URL, **bearer(raw)).status_code == 200
    writes = [q for q in ctx.captured_queries if q["sql"].startswith(f'UPDATE "{table}"')]
    assert len(writes) == 1
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


def test_the_key_is_read_from_postgresql_when_the_cache_is_off(client, key, settings):
    settings.API_KEY_CACHE_S = 0
    _, raw = key
    assert key_lookups(client, raw) == (200, 1)
    assert key_lookups(client, raw) == (200, 1)


def test_an_api_request_makes_two_redis_round_trips(client, key, redis_sends):
    """The key (entry and epoch in one MGET) and the rate-limit count (SET NX + INCR in one
    pipeline): one round trip each."""
    _, raw = key
    assert client.get(ORG_URL, **bearer(raw)).status_code == 200  # fills the key cache
    redis_sends.clear()
    sends = redis_sends
    assert client.get(ORG_URL, **bearer(raw)).status_code == 200
    assert len(sends) == 2
