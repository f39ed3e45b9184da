"""The analytics SQL view layer: the views exist with their documented columns, return the
seeded rows, and the read-only role reads the views and nothing else (no table, no write)."""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from accounts.models import Organization
from generations.models import Job
from operations.analytics.role import VIEWS
from tests.factories import account_of
from tests.operations.analytics_scenario import seed

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"


def _rows(sql: str, params=()) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        names = [c.name for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def _columns(view: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {view} LIMIT 0")
        return [c.name for c in cursor.description]


def test_every_view_exists_and_its_columns_are_documented():
    docs = DOCS.read_text()
    for view in VIEWS:
        section = docs.split(f"### `{view}`", 1)
        assert len(section) == 2, f"{view} has no section in docs/analytics.md"
        body = section[1].split("\n### ", 1)[0]
        documented = re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.M)
        assert documented == _columns(view), view


def test_views_return_the_seeded_rows():
    seed()
    jobs = _rows("SELECT * FROM analytics_jobs ORDER BY created_at")
    assert len(jobs) == Job.objects.count() == 6
    assert {(j["organization"], j["model"]) for j in jobs} == {
        ("acme", "flux"),
        ("acme", "sdxl"),
        ("bolt", "flux"),
        ("bolt", "sdxl"),
    }
    first = jobs[0]
    assert first["running_seconds"] == Decimal(600) and first["status"] == "succeeded"

    runs = _rows("SELECT * FROM analytics_gpu_runs")
    assert len(runs) == 7
    customer = {str(r["job_id"]) for r in runs if r["job_id"] is not None}
    assert customer == {str(j["job_id"]) for j in jobs}
    assert [r["external_id"] for r in runs if r["job_id"] is None] == ["hist-1"]

    rates = _rows("SELECT * FROM analytics_pool_rates WHERE pool = 'a100' ORDER BY effective_from")
    assert [r["hourly_rate_usd"] for r in rates] == [Decimal("3.60"), Decimal("4.00")]
    assert rates[0]["effective_to"] == rates[1]["effective_from"]
    assert rates[1]["effective_to"] is None

    uptime = _rows("SELECT node, pool, rate_kind FROM analytics_uptime ORDER BY node")
    assert uptime == [
        {"node": "a1", "pool": "a100", "rate_kind": "on_demand"},
        {"node": "l1", "pool": "l4", "rate_kind": "on_demand"},
    ]
    models = {r["model"]: r for r in _rows("SELECT * FROM analytics_models")}
    assert models["flux"]["pool"] == "a100" and models["sdxl"]["pool"] == "l4"

    orgs = {r["organization"]: r for r in _rows("SELECT * FROM analytics_organizations")}
    assert orgs["acme"]["plan"] == "starter" and orgs["bolt"]["plan"] == "creator"

    acme = account_of(Organization.objects.get(slug="acme"))
    entries = _rows(
        "SELECT * FROM analytics_ledger_entries WHERE organization = 'acme' ORDER BY sequence"
    )
    assert [e["entry_id"] for e in entries] == list(
        acme.entries.order_by("sequence").values_list("id", flat=True)
    )
    assert entries[-1]["balance_after"] == acme.balance


@pytest.fixture
def analytics_role():
    """A role unique to this test database (roles are cluster-wide), dropped afterwards."""
    role = f"analytics_{connection.settings_dict['NAME']}"[:63].lower()
    call_command("analytics_role", "--role", role, stdout=io.StringIO())
    yield role
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE IF EXISTS {role}")


def _as_role(role: str, sql: str):
    """`sql` as `role`, in a savepoint: a refused statement rolls the role back with it, a
    successful one resets it (SET LOCAL outlives a released savepoint)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute(sql)
        rows = cursor.fetchall() if cursor.description else None
        cursor.execute("RESET ROLE")
        return rows


def test_read_only_role_reads_the_views_and_nothing_else(analytics_role):
    seed()
    for view in VIEWS:
        _as_role(analytics_role, f"SELECT count(*) FROM {view}")
    assert _as_role(analytics_role, "SELECT count(*) FROM analytics_jobs") == [(6,)]
    refused = [
        "SELECT * FROM generations_job",
        "SELECT * FROM credits_ledgerentry",
        "SELECT * FROM accounts_user",
        "DELETE FROM analytics_jobs",
        "UPDATE analytics_models SET name = 'x'",
        "INSERT INTO credits_ledgerentry (id) VALUES (1)",
        "CREATE TABLE analytics_mine (id int)",
        "DROP VIEW analytics_jobs",
    ]
    for sql in refused:
        with pytest.raises(DatabaseError):
            _as_role(analytics_role, sql)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = %s",
            [analytics_role],
        )
        assert "default_transaction_read_only=on" in cursor.fetchone()[0]


def test_analytics_role_command_is_idempotent_and_prints_sql(analytics_role):
    call_command("analytics_role", "--role", analytics_role, stdout=io.StringIO())
    out = io.StringIO()
    call_command("analytics_role", "--role", analytics_role, "--print-sql", stdout=out)
    assert "GRANT SELECT ON analytics_jobs" in out.getvalue()
    assert "GRANT SELECT ON generations_job" not in out.getvalue()
