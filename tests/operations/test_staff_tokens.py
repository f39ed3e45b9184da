"""Staff API tokens: created by the command and the admin (shown once, stored hashed),
authenticate as their staff user on staff endpoints, never as an organization, and stop
working when revoked or when the user is no longer staff."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from accounts.keys import hash_api_key
from accounts.models import AuditEvent
from operations.models import StaffAPIToken
from operations.tokens.services import staff_token_create, staff_token_revoke
from tests.config.helpers import assert_problem, bearer
from tests.factories import UserFactory, make_account

pytestmark = pytest.mark.django_db

UNIT_COSTS = "/api/v1/costs/unit-costs/"
QUERY = {"start": "2026-01-05", "end": "2026-01-08"}


def _create(email: str, name: str = "bi") -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("staff_token", "create", "--user", email, "--name", name, stdout=out, stderr=err)
    assert "not shown again" in err.getvalue()
    return out.getvalue().strip()


def test_command_creates_a_token_stored_only_as_a_digest():
    staff = UserFactory(is_staff=True)
    raw = _create(staff.email)
    token = StaffAPIToken.objects.get()
    assert raw.startswith(f"gpus_{token.prefix}_")
    assert token.hashed_key == hash_api_key(raw)
    assert raw not in str(StaffAPIToken.objects.values().get())
    assert token.user == staff and token.name == "bi"
    assert AuditEvent.objects.filter(action="staff_token.created").count() == 1


def test_command_refuses_non_staff_and_unknown_users():
    member = UserFactory()
    with pytest.raises(CommandError, match="staff"):
        _create(member.email)
    with pytest.raises(CommandError, match="No user"):
        _create("nobody@example.com")
    assert not StaffAPIToken.objects.exists()


def test_token_authenticates_on_the_staff_cost_endpoint_and_records_use(api_client):
    staff = UserFactory(is_staff=True)
    raw = _create(staff.email)
    response = api_client.get(UNIT_COSTS, QUERY, **bearer(raw))
    assert response.status_code == 200, response.content
    assert StaffAPIToken.objects.get().last_used_at is not None


def test_token_never_reaches_organization_endpoints(api_client):
    """A staff user who is also a member of an organization: the token still acts for no
    organization, so customer endpoints refuse it (and show no organization's data)."""
    account = make_account(plan="starter", slug="acme")
    staff = account.organization.memberships.first().user
    staff.is_staff = True
    staff.save()
    raw = _create(staff.email)
    for url in ("/api/v1/balance/", "/api/v1/ledger/", "/api/v1/generations/"):
        response = api_client.get(url, **bearer(raw))
        assert response.status_code in (401, 403), (url, response.content)
        assert b"acme" not in response.content


def test_revoked_or_demoted_token_is_refused(api_client):
    staff = UserFactory(is_staff=True)
    token, raw = staff_token_create(user=staff, name="bi", actor=None)
    staff.is_staff = False
    staff.save()
    assert_problem(
        api_client.get(UNIT_COSTS, QUERY, **bearer(raw)), status=401, code="authentication_failed"
    )
    staff.is_staff = True
    staff.save()
    assert api_client.get(UNIT_COSTS, QUERY, **bearer(raw)).status_code == 200
    out = io.StringIO()
    call_command("staff_token", "revoke", "--prefix", token.prefix, stdout=out)
    assert "Revoked" in out.getvalue()
    assert_problem(
        api_client.get(UNIT_COSTS, QUERY, **bearer(raw)), status=401, code="authentication_failed"
    )
    assert staff_token_revoke(token=token, actor=None).revoked_at is not None  # idempotent
    assert AuditEvent.objects.filter(action="staff_token.revoked").count() == 1


def test_a_wrong_token_is_refused_and_api_keys_still_work(api_client):
    assert_problem(
        api_client.get(UNIT_COSTS, QUERY, **bearer("gpus_deadbeef_nope")),
        status=401,
        code="authentication_failed",
    )
    from accounts import services

    account = make_account(plan="starter", slug="keyed")
    _key, raw = services.api_key_create(organization=account.organization, name="k", actor=None)
    assert api_client.get("/api/v1/balance/", **bearer(raw)).status_code == 200


def test_admin_creates_a_token_and_shows_it_once(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    target = UserFactory(is_staff=True)
    client.force_login(admin)
    response = client.post(
        "/admin/operations/staffapitoken/add/",
        {"user": target.pk, "name": "looker"},
        follow=True,
    )
    assert response.status_code == 200
    token = StaffAPIToken.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    raw = next(s.split(": ")[-1] for s in shown if "not shown again" in s)
    assert token.hashed_key == hash_api_key(raw) and token.user == target
    page = client.get(f"/admin/operations/staffapitoken/{token.pk}/change/")
    assert raw not in page.content.decode()


def test_token_cannot_submit_generations_for_anyone(api_client):
    account = make_account(plan="starter", slug="acme")
    staff = account.organization.memberships.first().user
    staff.is_staff = True
    staff.save()
    raw = _create(staff.email)
    response = api_client.post(
        "/api/v1/generations/",
        {"model": "sdxl", "params": {}},
        format="json",
        **bearer(raw),
    )
    assert response.status_code in (401, 403)
    assert not account.organization.jobs.exists()


def test_list_shows_masked_tokens_never_the_secret():
    staff = UserFactory(is_staff=True)
    raw = _create(staff.email, name="looker")
    out = io.StringIO()
    call_command("staff_token", "list", "--user", staff.email, stdout=out)
    listed = out.getvalue()
    assert "looker" in listed and raw.split("_")[1] in listed
    assert raw not in listed and "never" in listed
