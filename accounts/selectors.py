"""Reads of accounts. Every customer-facing read is scoped to an organization."""

from __future__ import annotations

import hmac

from django.db.models import QuerySet

from accounts import keycache
from accounts.keys import hash_api_key, split_api_key
from accounts.models import APIKey, Membership, Organization, Plan, User
from config.errors import NotFound, PermissionDenied


def organizations_for_user(*, user: User) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user).order_by("name", "slug")


def organization_for_user(*, user: User, organization_id) -> Organization:
    """One of the user's organizations; any other (or a malformed id) is NotFound."""
    try:
        return organizations_for_user(user=user).get(pk=organization_id)
    except (Organization.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such organization.") from None


def plan_get(*, slug: str) -> Plan:
    try:
        return Plan.objects.get(slug=slug)
    except Plan.DoesNotExist:
        raise NotFound(f"No plan {slug!r}.") from None


def organization_by_slug(*, slug: str) -> Organization | None:
    """System-level lookup (commands, admin tooling): never use it for a customer request."""
    return Organization.objects.select_related("subscription__plan").filter(slug=slug).first()


def organization_detail(*, organization: Organization) -> Organization:
    """`organization` again, with its subscription and plan loaded in the same query."""
    return Organization.objects.select_related("subscription__plan").get(pk=organization.pk)


def membership_for(*, organization: Organization, user: User) -> Membership | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.select_related("organization")
        .filter(organization=organization, user=user)
        .first()
    )


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("user__email")
    )


def membership_get(*, organization: Organization, membership_id: int) -> Membership:
    """A membership of `organization`; another tenant's is NotFound."""
    try:
        return membership_list(organization=organization).get(pk=membership_id)
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such member.") from None


def api_access_check(*, organization: Organization) -> None:
    """API keys work only on a plan with API access: PermissionDenied (reason `api_access`)
    otherwise. The one place this rule lives (the API's permission class and
    `credits.services.spend_authorize` both ask it)."""
    plan = getattr(getattr(organization, "subscription", None), "plan", None)
    if plan is None or not plan.api_access:
        raise PermissionDenied(
            "Your plan does not include API access. Upgrade to use API keys.",
            reason="api_access",
            limit="api_access",
        )


def api_key_list(*, organization: Organization) -> QuerySet[APIKey]:
    return APIKey.objects.filter(organization=organization).select_related("created_by")


def api_key_get(*, organization: Organization, key_id: int) -> APIKey:
    try:
        return api_key_list(organization=organization).get(pk=key_id)
    except (APIKey.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such API key.") from None


def api_key_from_raw(*, raw_key: str) -> APIKey | None:
    """The active key whose value is `raw_key`, or None. Compares digests in constant time.

    The key comes with its organization, subscription and plan, from the key cache
    (accounts/keycache.py: one Redis round trip) or else one query, which fills the cache."""
    parts = split_api_key(raw_key)
    if parts is None:
        return None
    epoch, key = keycache.cached(prefix=parts[0])
    if key is None:
        key = (
            APIKey.objects.select_related("organization", "organization__subscription__plan")
            .filter(prefix=parts[0], revoked_at__isnull=True)
            .first()
        )
        if key is not None:
            keycache.remember(epoch=epoch, api_key=key)
    if key is None or not hmac.compare_digest(key.hashed_key, hash_api_key(raw_key)):
        return None
    return key


def plan_upgrade_for(*, plan: Plan | None) -> Plan | None:
    """The next public plan with a monthly price above `plan`'s (the dashboard's upgrade
    path); None on the top plan or a plan per contract."""
    if plan is not None and plan.monthly_price_usd is None:
        return None
    plans = Plan.objects.filter(is_public=True, monthly_price_usd__gt=0)
    if plan is not None:
        plans = plans.filter(monthly_price_usd__gt=plan.monthly_price_usd or 0).exclude(pk=plan.pk)
    return plans.order_by("monthly_price_usd", "sort_order", "slug").first()
