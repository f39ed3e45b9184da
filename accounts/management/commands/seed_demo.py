"""`manage.py seed_demo [--days 90] [--seed N] [--password PW]`: demo data, idempotently.

Re-running updates instead of duplicating: the default plans (only the missing ones), the demo
organization `demo` on `creator`, its owner demo@example.com, a superuser admin@example.com
and exactly one active API key named `demo` (the previous one is revoked: a key is shown once).
Later apps add their steps (models, pools, history) to `Command.seed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import selectors, services
from accounts.models import APIKey, Organization, Plan, Role, User
from config.errors import ServiceError

DEMO_ORG_SLUG = "demo"
DEMO_ORG_NAME = "Demo"
DEMO_PLAN = "creator"
DEMO_USER_EMAIL = "demo@example.com"
ADMIN_EMAIL = "admin@example.com"
DEMO_KEY_NAME = "demo"
DEFAULT_PASSWORD = "demo-password-123"
PASSWORD_ENV = "DEMO_PASSWORD"


@dataclass
class DemoAccounts:
    organization: Organization
    plan: Plan
    user: User
    admin: User
    api_key: APIKey
    raw_api_key: str


def seed_accounts(*, password: str) -> DemoAccounts:
    """Plans, demo users, demo organization and a fresh demo API key (call inside a transaction)."""
    services.plans_ensure_defaults()
    plan = Plan.objects.get(slug=DEMO_PLAN)
    user, _ = services.user_ensure(email=DEMO_USER_EMAIL, password=password, name="Demo User")
    admin, _ = services.user_ensure(
        email=ADMIN_EMAIL, password=password, name="Admin", is_staff=True, is_superuser=True
    )
    organization = selectors.organization_by_slug(slug=DEMO_ORG_SLUG)
    if organization is None:
        organization = services.organization_create(
            name=DEMO_ORG_NAME, slug=DEMO_ORG_SLUG, plan=plan, owner=user
        )
    else:
        services.membership_ensure(organization=organization, user=user, role=Role.OWNER)
        subscription = getattr(organization, "subscription", None)
        if subscription is None or subscription.plan_id != plan.pk:
            services.subscription_start(organization=organization, plan=plan)
    for old in selectors.api_key_list(organization=organization).filter(
        name=DEMO_KEY_NAME, revoked_at__isnull=True
    ):
        services.api_key_revoke(api_key=old, actor=None)
    api_key, raw = services.api_key_create(
        organization=organization, name=DEMO_KEY_NAME, actor=None
    )
    return DemoAccounts(
        organization=organization,
        plan=plan,
        user=user,
        admin=admin,
        api_key=api_key,
        raw_api_key=raw,
    )


class Command(BaseCommand):
    help = (
        f"Create or update the demo data: the default plans, organization {DEMO_ORG_SLUG!r} on "
        f"plan {DEMO_PLAN!r} owned by {DEMO_USER_EMAIL}, a superuser {ADMIN_EMAIL} and a "
        f"fresh API key named {DEMO_KEY_NAME!r} (any previous one is revoked). Prints the URL, "
        "logins and key. Idempotent: running it again duplicates nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=90,
            metavar="N",
            help="Days of usage history to generate (default 90). Accepted now; the history "
            "(GPU uptime and jobs) is added by the apps that own it.",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=0,
            metavar="N",
            help="Random seed of the generated history, so runs are reproducible (default 0). "
            "Accepted now; used with --days.",
        )
        parser.add_argument(
            "--password",
            metavar="PW",
            help=f"Password of both demo logins (default: ${PASSWORD_ENV} or "
            f"{DEFAULT_PASSWORD!r}). It is printed.",
        )

    def handle(self, *args, days: int, seed: int, password: str | None, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        password = password or os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD
        try:
            with transaction.atomic():
                demo = self.seed(password=password, days=days, seed=seed)
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        self.report(demo, password=password)

    def seed(self, *, password: str, days: int, seed: int) -> DemoAccounts:
        """Every seeding step, in one transaction. `days` and `seed` drive the history steps."""
        return seed_accounts(password=password)

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
            "  Try the API:",
            f"  curl -H 'Authorization: Bearer {key}' {base_url}/api/v1/organization/",
            "",
        ]
        self.stdout.write("\n".join(lines))
