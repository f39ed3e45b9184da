"""`manage.py seed_demo [--days 90] [--seed N] [--password PW] [--no-history | --history-only]`:
the demo, idempotently.

Accounts (plans, the `demo` organization, its owner, a staff superuser, a fresh API key), the
GPU pools `a100` and `l4` with rates and schedules, AI models with prices, and `--days` of
uptime and job history with a realistic (~50%) idle share, and two weeks of the demo
organization's own jobs (holds captured or released through credits.services, so its dashboard
and usage chart have history). Re-running duplicates nothing.

`make run` (scripts/run_dev.py) splits it: `--no-history` (everything but the history, about a
second) before the server starts, then `--history-only` (~400k GPU runs) in the background,
printing its progress; until it is done the staff pages show a banner
(`generations.demo.history_pending`).
"""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.demo import (
    ADMIN_EMAIL,
    DEFAULT_PASSWORD,
    DEMO_KEY_NAME,
    DEMO_ORG_SLUG,
    DEMO_PLAN,
    DEMO_USER_EMAIL,
    PASSWORD_ENV,
    DemoAccounts,
    seed_accounts,
)
from config.errors import ServiceError
from generations.demo import DemoWorld, history_pending, seed_demo_jobs, seed_world


class Command(BaseCommand):
    help = (
        f"Create or update the demo data: the default plans, organization {DEMO_ORG_SLUG!r} on "
        f"plan {DEMO_PLAN!r} owned by {DEMO_USER_EMAIL}, a superuser {ADMIN_EMAIL} and a "
        f"fresh API key named {DEMO_KEY_NAME!r} (any previous one is revoked); GPU pools a100 "
        "and l4 with rates and schedules; AI models with credit prices; and --days of uptime and "
        "job history with a realistic (~50%) idle share; two weeks of the demo organization's "
        "own jobs, charged through the ledger. Prints the URL, logins and key. "
        "Idempotent: running it again duplicates nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=90,
            metavar="N",
            help="Days of GPU uptime and job history to generate before today (default 90). "
            "Generated once per --seed; later runs keep it.",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=0,
            metavar="N",
            help="Random seed of the generated history, so runs are reproducible (default 0).",
        )
        parser.add_argument(
            "--password",
            metavar="PW",
            help=f"Password of both demo logins (default: ${PASSWORD_ENV} or "
            f"{DEFAULT_PASSWORD!r}). It is printed.",
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--no-history",
            action="store_true",
            help="Everything but the GPU uptime and run history (make run seeds that in the "
            "background with --history-only).",
        )
        which.add_argument(
            "--history-only",
            action="store_true",
            help="Only the GPU uptime and run history (and the pools and models it needs), "
            "with progress lines; prints no logins.",
        )

    def handle(
        self,
        *args,
        days: int,
        seed: int,
        password: str | None,
        no_history: bool,
        history_only: bool,
        **options,
    ):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if history_only:
            self.seed_history_only(days=days, seed=seed)
            return
        password = password or os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD
        try:
            with transaction.atomic():
                demo = self.seed(password=password, days=days, seed=seed, history=not no_history)
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        self.report(demo, password=password)

    def seed_history_only(self, *, days: int, seed: int) -> None:
        t0 = time.monotonic()

        def progress(line: str) -> None:
            self.stdout.write(f"demo history: {line} ({time.monotonic() - t0:.1f}s)")

        world = seed_world(days=days, seed=seed, progress=progress)
        if world.history_created:
            progress(
                f"complete: {world.runs:,} GPU runs and {world.uptime_intervals:,} uptime intervals"
            )
        else:
            progress("already present (kept)")

    def seed(self, *, password: str, days: int, seed: int, history: bool = True) -> DemoAccounts:
        """Every seeding step, in one transaction."""
        demo = seed_accounts(password=password)
        self.world = seed_world(days=days, seed=seed, history=history)
        self.demo_jobs = seed_demo_jobs(
            organization=demo.organization, user=demo.user, seed=seed, days=days
        )
        return demo

    def report(self, demo: DemoAccounts, *, password: str) -> None:
        key = demo.raw_api_key
        plan = demo.plan
        base_url = settings.SITE_URL.rstrip("/")
        lines = [
            "",
            "Demo data is ready.",
            "",
            f"  URL            {base_url}",
            f"  Customer login {DEMO_USER_EMAIL} / {password}",
            f"                 owner of organization {demo.organization.slug!r} (plan {plan.name})",
            f"  Admin login    {ADMIN_EMAIL} / {password}   ({base_url}/admin/)",
            f"  API key        {key}",
            f"                 named {DEMO_KEY_NAME!r}; shown only now, earlier demo keys "
            "are revoked",
            "",
            self._world_lines(),
            "  Try the API:",
            f"  curl -H 'Authorization: Bearer {key}' {base_url}/api/v1/organization/",
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _world_lines(self) -> str:
        world: DemoWorld = self.world
        pools = ", ".join(p.slug for p in world.pools)
        models = ", ".join(m.slug for m in world.models)
        if world.history_created:
            history = (
                f"generated {world.runs:,} GPU runs and {world.uptime_intervals:,} uptime intervals"
            )
        elif history_pending():
            history = "not yet generated (seed_demo --history-only)"
        else:
            history = "history already present (kept)"
        return (
            f"  GPU pools      {pools}\n"
            f"  Models         {models}\n"
            f"  History        {history}\n"
            f"  Demo jobs      {self.demo_jobs} added to the demo organization's history\n"
            "  Unit costs     .venv/bin/python manage.py unit_costs --start <date> --end <date>\n"
        )
