"""Bootstrap for the benchmark scripts: a PostgreSQL database of their own, Django set up on it,
migrated. Nothing here is imported by the application."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench"


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def ensure_database(url: str, *, fresh: bool = False) -> bool:
    """Create the database `url` names when it is missing (drop it first with `fresh`, which is
    refused unless its name contains "bench"). Returns True when it was created."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    if not name:
        raise SystemExit(f"DATABASE_URL has no database name: {url}")
    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            if "bench" not in name:
                raise SystemExit(f"--fresh refuses to drop {name!r}: its name lacks 'bench'.")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def setup(url: str, *, migrate: bool = True) -> None:
    """django.setup() against `url` (settings config.settings.base unless DJANGO_SETTINGS_MODULE
    says otherwise; DEBUG forced off so no query log grows during timing), then migrate."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
