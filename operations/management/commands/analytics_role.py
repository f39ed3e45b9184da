"""`manage.py analytics_role [--role NAME] [--password-env VAR] [--print-sql]`: create (or
update) the read-only PostgreSQL role BI tools use, granted SELECT on the `analytics_*` views
only (`operations.analytics.role`). The password is read from an environment variable, never
from the command line; without one the role cannot log in (grant it to a login role)."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from operations.analytics.role import DEFAULT_ROLE, role_sql, valid_role_name


class Command(BaseCommand):
    help = (
        "Create or update a read-only PostgreSQL role with SELECT on the analytics_* views "
        "only (docs/analytics.md). --print-sql prints the statements for a DBA instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", default=DEFAULT_ROLE, help=f"default {DEFAULT_ROLE}")
        parser.add_argument(
            "--password-env",
            help="name of an environment variable holding the role's password (LOGIN role)",
        )
        parser.add_argument("--print-sql", action="store_true", help="print, do not run")

    def handle(self, *args, **options):
        role = options["role"]
        if not valid_role_name(role):
            raise CommandError("Role names are lowercase letters, digits and _ (at most 63).")
        password = None
        if options["password_env"]:
            password = os.environ.get(options["password_env"])
            if not password:
                raise CommandError(f"{options['password_env']} is not set or empty.")
        statements = role_sql(
            role=role, database=connection.settings_dict["NAME"], login=password is not None
        )
        if options["print_sql"]:
            for sql, _ in statements:
                self.stdout.write(sql + ";")
            if password is not None:
                env_name = options["password_env"]
                self.stdout.write(f"ALTER ROLE {role} PASSWORD '…';  -- the value of ${env_name}")
            return
        with transaction.atomic(), connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
            if password is not None:
                cursor.execute(
                    "SELECT format('ALTER ROLE %%I PASSWORD %%L', %s::text, %s::text)",
                    [role, password],
                )
                cursor.execute(cursor.fetchone()[0])
        self.stdout.write(
            f"Role {role}: read-only, SELECT on the analytics views only"
            + (" (can log in)." if password is not None else " (NOLOGIN).")
        )
