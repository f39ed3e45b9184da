"""The read-only PostgreSQL role for BI tools: SELECT on the `analytics_*` views only.

`role_sql` is the SQL `manage.py analytics_role` runs (or prints, with `--print-sql`, for a DBA
to run): create the role if missing, make its sessions read-only, grant CONNECT on the database,
USAGE on the schema and SELECT on each analytics view — nothing on the internal tables (a view
reads its tables with its owner's rights, so the role needs none)."""

from __future__ import annotations

import re

from django.db import connection

VIEWS = (
    "analytics_organizations",
    "analytics_models",
    "analytics_jobs",
    "analytics_ledger_entries",
    "analytics_gpu_runs",
    "analytics_uptime",
    "analytics_pool_rates",
)
DEFAULT_ROLE = "gpucredits_analytics"
ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def valid_role_name(name: str) -> bool:
    return bool(ROLE_RE.match(name))


def role_sql(*, role: str, database: str, login: bool) -> list[tuple[str, list]]:
    """(statement, params) pairs. `role` must satisfy `valid_role_name` (it is an identifier,
    interpolated after that check; values are bound)."""
    if not valid_role_name(role):
        raise ValueError("invalid role name")
    ident = connection.ops.quote_name(role)
    db = connection.ops.quote_name(database)
    attrs = "LOGIN" if login else "NOLOGIN"
    statements: list[tuple[str, list]] = [
        (
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {ident} {attrs}; END IF; END $$",
            [],
        ),
        (f"ALTER ROLE {ident} {attrs} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT", []),
        (f"ALTER ROLE {ident} SET default_transaction_read_only = on", []),
        (f"GRANT CONNECT ON DATABASE {db} TO {ident}", []),
        (f"GRANT USAGE ON SCHEMA public TO {ident}", []),
        (f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ident}", []),
    ]
    statements += [(f"GRANT SELECT ON {view} TO {ident}", []) for view in VIEWS]
    return statements
