"""API-key and session authentication of the REST API (spec §4: keys shown once, stored hashed;
wrong or revoked keys get 401 problem+json)."""

from __future__ import annotations

import hashlib

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import APIKey, AuditEvent
from tests.config.helpers import assert_problem, bearer
from tests.factories import UserFactory, make_org

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"
SCHEMA_URL = "/api/schema/"


@pytest.fixture
def org():
    return make_org(slug="acme", plan="starter")


@pytest.fixture
def key(org):
    return services.api_key_create(organization=org, name="ci", actor=None)


def test_api_key_is_stored_only_as_sha256_digest(key):
    api_key, raw = key
    assert raw.startswith(f"gpuc_{api_key.prefix}_")
    secret = raw.split("_", 2)[2]
    row = APIKey.objects.filter(pk=api_key.pk).values().get()
    assert row["hashed_key"] == hashlib.sha256(raw.encode()).hexdigest()
    for column, value in row.items():
        assert raw not in str(value), column
        assert secret not in str(value), column
    for event in AuditEvent.objects.all():
        assert secret not in str(event.data)


def test_valid_key_authenticates_and_records_last_use(client, key):
    api_key, raw = key
    assert api_key.last_used_at is None
    response = client.get(ORG_URL, **bearer(raw))
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert timezone.now() - api_key.last_used_at < timezone.timedelta(minutes=1)


def test_revoked_key_gets_401_problem(client, key):
    api_key, raw = key
    services.api_key_revoke(api_key=api_key, actor=None)
    response = client.get(ORG_URL, **bearer(raw))
    assert_problem(response, status=401, code="authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_wrong_secret_with_a_real_prefix_gets_401(client, key):
    api_key, _ = key
    forged = f"gpuc_{api_key.prefix}_{'x' * 43}"
    assert_problem(client.get(ORG_URL, **bearer(forged)), status=401, code="authentication_failed")


def test_unknown_key_gets_401(client, key):
    response = client.get(ORG_URL, **bearer("gpuc_deadbeef_notarealsecretatall"))
    assert_problem(response, status=401, code="authentication_failed")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer not-a-gpuc-key", "Bearer gpuc_short_x"],
)
def test_malformed_authorization_header_gets_401(client, key, header):
    response = client.get(ORG_URL, HTTP_AUTHORIZATION=header)
    assert_problem(response, status=401, code="authentication_failed")


def test_no_credentials_gets_401(client, key):
    body = assert_problem(client.get(ORG_URL), status=401, code="authentication_failed")
    assert body["instance"] == ORG_URL


def test_other_authorization_scheme_counts_as_no_credentials(client, key):
    response = client.get(ORG_URL, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert_problem(response, status=401, code="authentication_failed")


def test_queries_still_work_after_an_authentication_failure(client, key):
    """The error handler must not poison the surrounding (test) transaction."""
    client.get(ORG_URL, **bearer("gpuc_deadbeef_nope"))
    assert APIKey.objects.count() == 1


def test_session_member_reads_their_active_organization(client, org):
    owner = org.memberships.get().user
    client.force_login(owner)
    response = client.get(ORG_URL)
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"


def test_session_user_without_organization_gets_403(client):
    client.force_login(UserFactory())
    response = client.get(ORG_URL)
    assert_problem(response, status=403, code="permission_denied")


# --- /api/schema/ -----------------------------------------------------------------------------


def test_schema_with_valid_key_is_openapi_3(client, key):
    _, raw = key
    response = client.get(SCHEMA_URL, {"format": "json"}, **bearer(raw))
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/organization/" in document["paths"]


def test_schema_default_format_is_yaml_openapi(client, key):
    _, raw = key
    response = client.get(SCHEMA_URL, **bearer(raw))
    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_schema_without_key_is_public(client):
    response = client.get(SCHEMA_URL, {"format": "json"})
    assert response.status_code == 200
    assert "openapi" in response.json()


def test_schema_with_wrong_key_gets_401(client, key):
    response = client.get(SCHEMA_URL, **bearer("gpuc_deadbeef_wrongwrongwrong"))
    assert_problem(response, status=401, code="authentication_failed")


def test_schema_with_revoked_key_gets_401(client, key):
    api_key, raw = key
    services.api_key_revoke(api_key=api_key, actor=None)
    assert_problem(client.get(SCHEMA_URL, **bearer(raw)), status=401, code="authentication_failed")
