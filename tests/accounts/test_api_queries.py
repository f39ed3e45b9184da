"""Queries per request of the accounts endpoints of API v1 (issue 16), pinned: a read is
SAVEPOINT, the tenant scope's set_config, the view's queries, the scope's restoring
set_config, RELEASE (the test's transaction). The API key is used once first: it then comes
from the key cache (accounts/keycache.py), and its last_used_at is not written again."""

from __future__ import annotations

import pytest

from accounts import services
from tests.config.helpers import bearer
from tests.factories import make_org

pytestmark = pytest.mark.django_db

SCOPE = 4  # SAVEPOINT, set_config (tenant scope), set_config (scope restored), RELEASE


@pytest.fixture
def org():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def key(client, org):
    raw = services.api_key_create(organization=org, name="k", actor=None)[1]
    assert client.get("/api/v1/organization/", **bearer(raw)).status_code == 200
    return raw


def test_the_organization_is_one_query(client, key, django_assert_num_queries):
    with django_assert_num_queries(SCOPE + 1):  # the organization with its subscription and plan
        assert client.get("/api/v1/organization/", **bearer(key)).status_code == 200


def test_the_key_list_is_one_query_whatever_the_number_of_keys(
    client, org, key, django_assert_num_queries
):
    for i in range(5):
        services.api_key_create(organization=org, name=f"k{i}", actor=None)
    client.get("/api/v1/organization/", **bearer(key))  # creating keys invalidated the cache
    with django_assert_num_queries(SCOPE + 1):
        assert len(client.get("/api/v1/api-keys/", **bearer(key)).json()["results"]) == 6


def test_an_unknown_key_is_refused_after_one_query(client, key, django_assert_num_queries):
    forged = "gpuc_00000000_" + "x" * 43
    with django_assert_num_queries(1):  # the prefix lookup; nothing cached for it
        assert client.get("/api/v1/organization/", **bearer(forged)).status_code == 401
