"""`manage.py seed_demo` (create_org: tests/credits/test_create_org.py)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError

from accounts.models import (
    APIKey,
    Membership,
    Organization,
    Plan,
    Role,
    Subscription,
    User,
)
from tests.config.helpers import bearer

pytestmark = pytest.mark.django_db

ORG_URL = "/api/v1/organization/"


def run(name: str, *args, **kwargs) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, **kwargs)
    return out.getvalue()


def help_text(name: str) -> str:
    parser = load_command_class("generations", name).create_parser("manage.py", name)
    return " ".join(parser.format_help().split())  # unwrap lines


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
