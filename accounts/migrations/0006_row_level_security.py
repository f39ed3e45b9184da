"""PostgreSQL row-level security on the tenant tables (defence in depth behind the ORM scoping).

A NOLOGIN role `gpucredits_tenant` gets ordinary table privileges; policies restrict it to the
rows of the organization in `app.organization_id` (and, for memberships and organizations, the
user in `app.user_id`). Only a transaction that does `SET LOCAL ROLE gpucredits_tenant`
(accounts.tenancy.tenant_scope) is restricted: the connection's own role (staff pages, workers,
migrations, maintenance) owns the tables and is unaffected, and a non-owner application role is
let through by the `unscoped_roles` policy. See docs/reliability.md, "Row-level security".

The list of tables is frozen here; a later tenant table adds its policy in its own migration
(tests/accounts/test_rls.py fails for a model with an organization or account key and no RLS).
"""

from django.db import migrations

ROLE = "gpucredits_tenant"

# table -> the condition a row of the current tenant satisfies
ORG = "organization_id = app_tenant_id()"
ACCOUNT = (
    "account_id IN (SELECT id FROM credits_creditaccount WHERE organization_id = app_tenant_id())"
)
TENANT_TABLES = {
    # accounts
    "accounts_organization": (
        "id = app_tenant_id() OR id IN "
        "(SELECT organization_id FROM accounts_membership WHERE user_id = app_user_id())"
    ),
    "accounts_membership": "organization_id = app_tenant_id() OR user_id = app_user_id()",
    "accounts_apikey": ORG,
    "accounts_subscription": ORG,
    "accounts_auditevent": ORG,
    # credits
    "credits_creditaccount": ORG,
    "credits_creditgrant": ACCOUNT,
    "credits_credithold": ACCOUNT,
    "credits_ledgerentry": ACCOUNT,
    "credits_entryallocation": ACCOUNT,
    "credits_overagerecord": ACCOUNT,
    "credits_stripecustomer": ORG,
    "credits_stripeevent": ORG,
    "credits_purchase": ORG,
    "credits_autotopup": ORG,
    "credits_lowbalancealert": ORG,
    "credits_billingemail": ORG,
    # generations
    "generations_job": ORG,
    "generations_jobevent": (
        "job_id IN (SELECT id FROM generations_job WHERE organization_id = app_tenant_id())"
    ),
}

SETUP = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN;
    END IF;
    -- The application's role must be allowed to SET ROLE to it (a superuser always is).
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT {ROLE} TO %I', current_user);
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO {ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {ROLE};

-- '' (a setting reset at the end of a transaction) and unset both mean "no tenant": no rows.
CREATE OR REPLACE FUNCTION app_tenant_id() RETURNS bigint LANGUAGE sql STABLE AS
$f$ SELECT NULLIF(current_setting('app.organization_id', true), '')::bigint $f$;
CREATE OR REPLACE FUNCTION app_user_id() RETURNS bigint LANGUAGE sql STABLE AS
$f$ SELECT NULLIF(current_setting('app.user_id', true), '')::bigint $f$;
"""

TEARDOWN = f"""
DROP FUNCTION IF EXISTS app_tenant_id();
DROP FUNCTION IF EXISTS app_user_id();
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {ROLE};
REVOKE USAGE ON SCHEMA public FROM {ROLE};
"""


def _enable(table: str, condition: str) -> str:
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {table} FOR ALL TO {ROLE}
    USING ({condition}) WITH CHECK ({condition});
CREATE POLICY unscoped_roles ON {table} FOR ALL TO PUBLIC
    USING (current_user <> '{ROLE}') WITH CHECK (current_user <> '{ROLE}');
"""


def _disable(table: str) -> str:
    return f"""
DROP POLICY IF EXISTS tenant_isolation ON {table};
DROP POLICY IF EXISTS unscoped_roles ON {table};
ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_plan_shapes_defaults"),
        ("credits", "0006_usage_holds"),
        ("generations", "0003_ai_model_cost_stages"),
    ]

    operations = [
        migrations.RunSQL(SETUP, TEARDOWN),
        *(
            migrations.RunSQL(_enable(table, condition), _disable(table))
            for table, condition in TENANT_TABLES.items()
        ),
    ]
