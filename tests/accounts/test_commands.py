"""`manage.py create_org` (spec §5) and `manage.py seed_demo`."""

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
    Plan,
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
    app = "generations" if name == "seed_demo" else "accounts"
    parser = load_command_class(app, name).create_parser("manage.py", name)
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

    monkeypatch.setattr(credits.services, "organization_grant", frozen)
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


# --- seed_demo --------------------------------------------------------------------------------


def printed_key(output: str) -> str:
    match = re.search(r"curl -H 'Authorization: Bearer (gpuc_\S+)' (\S+)", output)
    assert match, output
    assert match.group(2) == "http://127.0.0.1:8000/api/v1/organization/"
    return match.group(1)


def test_seed_demo_creates_the_demo_and_prints_how_to_use_it(client):
    output = run("seed_demo", "--days", "2")
    assert "http://127.0.0.1:8000" in output
    assert "demo@example.com / demo-password-123" in output
    assert "admin@example.com / demo-password-123" in output
    org = Organization.objects.get(slug="demo")
    assert org.subscription.plan.slug == "creator"
    demo = User.objects.get(email="demo@example.com")
    admin = User.objects.get(email="admin@example.com")
    assert demo.check_password("demo-password-123")
    assert admin.check_password("demo-password-123")
    assert admin.is_staff and admin.is_superuser
    assert not demo.is_staff
    assert Membership.objects.get(organization=org, user=demo).role == Role.OWNER
    key = printed_key(output)
    assert key in output.split("API key", 1)[1]
    response = client.get(ORG_URL, **bearer(key))
    assert response.status_code == 200
    assert response.json()["slug"] == "demo"


def test_seed_demo_twice_duplicates_nothing_and_rotates_the_key(client):
    first_key = printed_key(run("seed_demo", "--days", "2"))
    counts = {
        m.__name__: m.objects.count() for m in (Organization, User, Membership, Subscription, Plan)
    }
    second_key = printed_key(run("seed_demo", "--days", "2"))
    assert {
        m.__name__: m.objects.count() for m in (Organization, User, Membership, Subscription, Plan)
    } == counts
    assert first_key != second_key
    demo_keys = APIKey.objects.filter(organization__slug="demo", name="demo")
    assert demo_keys.count() == 2
    assert demo_keys.filter(revoked_at__isnull=True).count() == 1
    assert client.get(ORG_URL, **bearer(first_key)).status_code == 401
    assert client.get(ORG_URL, **bearer(second_key)).status_code == 200


def test_seed_demo_repairs_a_changed_demo(client):
    run("seed_demo", "--days", "2")
    org = Organization.objects.get(slug="demo")
    Subscription.objects.filter(organization=org).update(plan=Plan.objects.get(slug="starter"))
    Membership.objects.filter(organization=org).update(role=Role.MEMBER)
    User.objects.filter(email="admin@example.com").update(is_superuser=False)
    run("seed_demo", "--days", "2")
    org = Organization.objects.get(slug="demo")
    assert org.subscription.plan.slug == "creator"
    assert Membership.objects.get(organization=org).role == Role.OWNER
    assert User.objects.get(email="admin@example.com").is_superuser


def test_seed_demo_recreates_a_missing_default_plan():
    Plan.objects.filter(slug="enterprise").delete()
    run("seed_demo", "--days", "2")
    assert Plan.objects.get(slug="enterprise").api_rate_limit_per_min == 6000


def test_seed_demo_password_from_option_then_env(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "from-env-pw-1")
    assert "demo@example.com / from-env-pw-1" in run("seed_demo", "--days", "2")
    assert User.objects.get(email="demo@example.com").check_password("from-env-pw-1")
    out = run("seed_demo", "--days", "2", "--password", "from-option-pw-2")
    assert "admin@example.com / from-option-pw-2" in out
    assert User.objects.get(email="admin@example.com").check_password("from-option-pw-2")


def test_seed_demo_accepts_days_and_seed():
    run("seed_demo", "--days", "3", "--seed", "42")
    with pytest.raises(CommandError, match="--days"):
        run("seed_demo", "--days", "0")


def test_seed_demo_help_documents_every_option():
    text = help_text("seed_demo")
    for option in ("--days N", "--seed N", "--password PW", "DEMO_PASSWORD", "Idempotent"):
        assert option in text, option
