"""The accounts part of the demo (`manage.py seed_demo`, in the generations app, which adds
pools, models and history on top), idempotently.

Re-running updates instead of duplicating: the default plans (only the missing ones), the demo
organization `demo` on `creator`, its owner demo@example.com, a superuser admin@example.com
and exactly one active API key named `demo` (the previous one is revoked: a key is shown once).
"""

from __future__ import annotations

from dataclasses import dataclass

from accounts import selectors, services
from accounts.models import APIKey, Organization, Plan, Role, User

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
