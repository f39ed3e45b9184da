"""`manage.py create_org` (spec §5), a credits command: organization, owner, grant, API key."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from accounts.models import (
    APIKey,
    AuditEvent,
    Membership,
    Organization,
    Role,
    Subscription,
    User,
)
from config.errors import ValidationError
from credits.models import CreditAccount, CreditGrant, LedgerEntry
from tests.config.helpers import bearer
from tests.factories import UserFactory, make_org

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"
ROW_MODELS = (Organization, Membership, Subscription, APIKey, AuditEvent, User)


def run(name: str, *args, **kwargs) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, **kwargs)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in ROW_MODELS}


def help_text(name: str) -> str:
    parser = load_command_class("credits", name).create_parser("manage.py", name)
    return " ".join(parser.format_help().split())  # unwrap lines


# --- create_org -------------------------------------------------------------------------------


def test_create_org_prints_exactly_the_spec_json_without_key():
    out = run("create_org", "acme", "--plan", "starter")
    assert out.strip().count("\n") == 0
    assert json.loads(out) == {"organization": "acme", "api_key": None}
    org = Organization.objects.get(slug="acme")
    assert org.name == "acme"
    assert org.subscription.plan.slug == "starter"
    assert not APIKey.objects.exists()


def test_create_org_api_key_is_printed_and_authenticates(client):
    data = json.loads(run("create_org", "acme", "--plan", "creator", "--api-key"))
    assert list(data) == ["organization", "api_key"]
    assert data["organization"] == "acme"
    key = APIKey.objects.get()
    assert key.organization.slug == "acme"
    assert data["api_key"].startswith(f"gpuc_{key.prefix}_")
    response = client.get(ORG_URL, **bearer(data["api_key"]))
    assert response.status_code == 200
    assert response.json()["slug"] == "acme"
    assert response.json()["plan"]["slug"] == "creator"


def test_create_org_with_name_and_new_owner():
    run(
        "create_org",
        "acme",
        "--plan",
        "starter",
        "--name",
        "Acme Inc",
        "--owner",
        "Boss@Example.com",
    )
    org = Organization.objects.get(slug="acme")
    assert org.name == "Acme Inc"
    member = Membership.objects.get(organization=org)
    assert member.role == Role.OWNER
    assert member.user.email == "boss@example.com"
    assert not member.user.has_usable_password()


def test_create_org_attaches_an_existing_owner():
    user = UserFactory(email="owner@example.com")
    run("create_org", "acme", "--plan", "starter", "--owner", "OWNER@example.com")
    assert Membership.objects.get(organization__slug="acme").user == user
    user.refresh_from_db()
    assert user.check_password("correct-horse-battery")  # untouched


def test_create_org_without_owner_has_no_members():
    run("create_org", "acme", "--plan", "studio")
    assert not Membership.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["acme", "--plan", "platinum"], "Unknown plan 'platinum'"),
        (["Not A Slug", "--plan", "starter"], "Invalid organization slug"),
        (["acme-", "--plan", "starter"], "Invalid organization slug"),
        (["ACME", "--plan", "starter"], "Invalid organization slug"),
        (["acme", "--plan", "starter", "--grant", "abc"], "not a number"),
        (["acme", "--plan", "starter", "--grant", "0"], "zero"),
        (["acme", "--plan", "starter", "--grant", "-5"], "positive"),
        (["acme", "--plan", "starter", "--grant", "NaN"], "finite"),
        (["acme", "--plan", "starter", "--grant", "Infinity"], "finite"),
        (["acme", "--plan", "starter", "--grant", "1.0005"], "3 decimal places"),
        (["acme", "--plan", "starter", "--grant", "1e30"], "too large"),
        (["acme", "--plan", "starter", "--owner", "not-an-email"], "Invalid email"),
    ],
)
def test_create_org_refuses_invalid_input_and_writes_nothing(args, message):
    before = row_counts()
    with pytest.raises(CommandError, match=re.escape(message)):
        run("create_org", *args)
    assert row_counts() == before


def test_create_org_refuses_a_taken_slug_and_writes_nothing():
    make_org(slug="acme")
    before = row_counts()
    with pytest.raises(CommandError, match="already exists"):
        run("create_org", "acme", "--plan", "starter", "--api-key", "--owner", "x@example.com")
    assert row_counts() == before


def test_create_org_grant_credits_the_account_once_as_an_adjustment():
    data = json.loads(run("create_org", "acme", "--plan", "starter", "--grant", "12.5"))
    org = Organization.objects.get(slug="acme")
    assert data == {"organization": "acme", "api_key": None}
    account = CreditAccount.objects.get(organization=org)
    grant = CreditGrant.objects.get(account=account, source="adjustment")
    assert grant.amount == Decimal("12.500")
    assert account.balance == Decimal(500) + Decimal("12.5")  # plan credits + the grant
    entry = LedgerEntry.objects.get(grant=grant)
    assert entry.idempotency_key == f"create_org:{org.pk}:grant"
    assert entry.reason


def test_create_org_rolls_back_everything_when_the_grant_fails(monkeypatch):
    import credits.services

    def frozen(**kwargs):
        raise ValidationError("Credit account is frozen.")

    monkeypatch.setattr(credits.services, "organization_grant_in_transaction", frozen)
    before = row_counts()
    with pytest.raises(CommandError, match="frozen"):
        run("create_org", "acme", "--plan", "starter", "--grant", "5", "--api-key")
    assert row_counts() == before
    assert not CreditAccount.objects.filter(organization__slug="acme").exists()


def test_create_org_help_explains_every_option():
    text = help_text("create_org")
    for option in (
        "SLUG",
        "--plan PLAN",
        "--grant CREDITS",
        "--api-key",
        "--name NAME",
        "--owner EMAIL",
    ):
        assert option in text, option
    assert "3 decimal places" in text
    assert "JSON" in text
