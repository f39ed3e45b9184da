"""Web UI: the API keys page — create (shown once, stored hashed), list, revoke, plan notice."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.keys import hash_api_key
from accounts.models import APIKey, Role
from accounts.selectors import api_key_from_raw
from accounts.services import api_key_create
from tests.factories import add_member, make_org

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"gpuc_[0-9a-f]{8}_[A-Za-z0-9_\-]{20,}")


@pytest.fixture
def org():
    return make_org(name="Acme", plan="starter")


@pytest.fixture
def owner(org):
    return org.memberships.get(role=Role.OWNER)


def _login(client, membership):
    client.force_login(membership.user)
    client.get(reverse("dashboard"))
    return client


def _every_stored_text() -> str:
    """Every cell of every table, as text: the raw key must appear in none of them."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            chunks.extend(str(cell) for row in cursor.fetchall() for cell in row)
    return "\n".join(chunks)


def test_owner_creates_a_key_that_is_shown_once_and_stored_only_hashed(client, org, owner):
    _login(client, owner)

    response = client.post(reverse("api_keys"), {"name": "ci"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    shown = KEY_RE.findall(body)
    assert len(set(shown)) == 1
    raw_key = shown[0]
    assert "will not be shown again" in body

    key = APIKey.objects.get(organization=org, name="ci")
    assert raw_key.startswith(f"gpuc_{key.prefix}_")
    assert key.hashed_key == hash_api_key(raw_key)
    assert key.created_by == owner.user
    secret = raw_key[len(f"gpuc_{key.prefix}_") :]
    stored = _every_stored_text()
    assert raw_key not in stored
    assert secret not in stored
    assert all(raw_key not in str(v) for v in client.session.values())
    assert all(raw_key not in c.value for c in response.cookies.values())

    listing = client.get(reverse("api_keys")).content.decode()
    assert raw_key not in listing
    assert not KEY_RE.search(listing)
    assert f"gpuc_{key.prefix}_…" in listing
    assert api_key_from_raw(raw_key=raw_key) == key


def test_listing_shows_name_prefix_creator_and_status(client, org, owner):
    active, _ = api_key_create(organization=org, name="prod", actor=owner.user)
    revoked, _ = api_key_create(organization=org, name="old", actor=owner.user)
    revoked.revoked_at = revoked.created_at
    revoked.save()
    _login(client, owner)

    body = client.get(reverse("api_keys")).content.decode()

    assert "prod" in body and "old" in body
    assert f"gpuc_{active.prefix}_…" in body
    assert owner.user.email in body
    assert ">active</span>" in body and ">revoked</span>" in body
    assert "never" in body  # last used
    assert reverse("api_key_revoke", args=[active.pk]) in body
    assert reverse("api_key_revoke", args=[revoked.pk]) not in body


def test_admin_can_create_a_key(client, org):
    admin = add_member(org, role=Role.ADMIN)
    _login(client, admin)
    client.post(reverse("api_keys"), {"name": "admin key"})
    assert APIKey.objects.filter(organization=org, name="admin key").exists()


def test_create_with_a_blank_name_is_a_field_error_and_writes_nothing(client, org, owner):
    _login(client, owner)

    response = client.post(reverse("api_keys"), {"name": "   "})

    assert response.status_code == 200
    assert "name" in response.context["form"].errors
    assert not KEY_RE.search(response.content.decode())
    assert APIKey.objects.count() == 0


def test_member_sees_keys_read_only_and_cannot_create_or_revoke(client, org, owner):
    key, _ = api_key_create(organization=org, name="prod", actor=owner.user)
    member = add_member(org, role=Role.MEMBER)
    _login(client, member)

    body = client.get(reverse("api_keys")).content.decode()
    assert "prod" in body
    assert 'name="name"' not in body
    assert reverse("api_key_revoke", args=[key.pk]) not in body

    assert client.post(reverse("api_keys"), {"name": "sneaky"}).status_code == 403
    assert client.post(reverse("api_key_revoke", args=[key.pk])).status_code == 403
    assert APIKey.objects.count() == 1
    key.refresh_from_db()
    assert key.is_active


def test_revoke_disables_the_key(client, org, owner, api_client):
    key, raw_key = api_key_create(organization=org, name="prod", actor=owner.user)
    _login(client, owner)
    assert api_client.get("/api/schema/", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 200

    response = client.post(reverse("api_key_revoke", args=[key.pk]), follow=True)

    assert response.redirect_chain[-1][0] == reverse("api_keys")
    assert "Revoked the key" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api_key_from_raw(raw_key=raw_key) is None
    refused = api_client.get("/api/schema/", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert refused.status_code == 401
    assert refused.json()["code"] == "authentication_failed"


def test_revoke_over_htmx_returns_the_refreshed_table(client, org, owner):
    key, _ = api_key_create(organization=org, name="prod", actor=owner.user)
    _login(client, owner)

    response = client.post(reverse("api_key_revoke", args=[key.pk]), HTTP_HX_REQUEST="true")

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="api-keys-table">')
    assert "revoked" in body
    assert "<html" not in body


def test_revoking_the_key_just_created_clears_its_copy_it_now_box(client, org, owner):
    """The create answer shows the secret; revoking that key over htmx replaces the box
    (out of band) with a note, so the revoked secret does not stay on the page."""
    _login(client, owner)
    created = client.post(reverse("api_keys"), {"name": "ci"}).content.decode()
    raw_key = KEY_RE.search(created).group(0)
    key = APIKey.objects.get(organization=org, name="ci")
    assert f'id="new-key-{key.pk}"' in created

    response = client.post(reverse("api_key_revoke", args=[key.pk]), HTTP_HX_REQUEST="true")

    body = response.content.decode()
    box = re.search(rf'<article[^>]*id="new-key-{key.pk}"[^>]*>.*?</article>', body, re.S)
    assert box is not None
    assert 'hx-swap-oob="outerHTML"' in box.group(0)
    assert "was revoked" in box.group(0)
    assert raw_key not in body


def test_revoke_needs_post(client, org, owner):
    key, _ = api_key_create(organization=org, name="prod", actor=owner.user)
    _login(client, owner)
    assert client.get(reverse("api_key_revoke", args=[key.pk])).status_code == 405
    key.refresh_from_db()
    assert key.is_active


def test_another_orgs_key_is_404_and_unchanged(client, org, owner):
    other = make_org(name="Other")
    other_key, _ = api_key_create(organization=other, name="theirs", actor=None)
    _login(client, owner)

    assert client.post(reverse("api_key_revoke", args=[other_key.pk])).status_code == 404
    assert client.post(reverse("api_key_revoke", args=[987654])).status_code == 404
    other_key.refresh_from_db()
    assert other_key.is_active
    assert "theirs" not in client.get(reverse("api_keys")).content.decode()


def test_free_plan_shows_that_keys_will_not_work_until_upgrade(client):
    free = make_org(name="Freebie", plan="free")
    _login(client, free.memberships.get())
    body = client.get(reverse("api_keys")).content.decode()
    assert 'id="no-api-access"' in body
    assert "has no API access" in body


def test_paid_plan_shows_no_upgrade_notice(client, org, owner):
    _login(client, owner)
    assert 'id="no-api-access"' not in client.get(reverse("api_keys")).content.decode()


def test_create_key_enforces_csrf(org, owner):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(owner.user)

    response = csrf_client.post(reverse("api_keys"), {"name": "ci"})

    assert response.status_code == 403
    assert APIKey.objects.count() == 0


def test_api_keys_page_requires_login(client):
    response = client.get(reverse("api_keys"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
