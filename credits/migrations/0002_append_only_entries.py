"""Ledger entries and their allocations are append-only: the database itself refuses UPDATE
and DELETE on them (corrections are new entries)."""

from django.db import migrations

TABLES = ("credits_ledgerentry", "credits_entryallocation")

FUNCTION = """
CREATE OR REPLACE FUNCTION credits_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'credits ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

FORWARDS = [
    FUNCTION,
    *(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION credits_refuse_change()"
        for table in TABLES
    ),
]

BACKWARDS = [
    *(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table in TABLES),
    "DROP FUNCTION IF EXISTS credits_refuse_change()",
]


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [migrations.RunSQL(FORWARDS, BACKWARDS)]
