"""Every write to accounts: organizations, members, API keys, subscriptions, audit.

Keyword-only arguments, one transaction each, an audit row for every change that matters.
Other apps react to subscriptions through the signals in `accounts.signals` (the credits app
grants a period's credits), so this module knows nothing above it.
"""

from __future__ import annotations

import calendar
import importlib
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.text import slugify

from accounts import keycache
from accounts.keys import API_KEY_PREFIX, hash_api_key
from accounts.models import (
    FREE_PLAN_SLUG,
    APIKey,
    AuditEvent,
    Membership,
    Organization,
    Plan,
    Role,
    Subscription,
    SubscriptionStatus,
    TeamMembership,
    User,
)
from accounts.signals import subscription_period_opened
from config.errors import NotFound, PermissionDenied, ValidationError

# --- Audit ------------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    organization: Organization | None = None,
    actor: User | None = None,
    actor_api_key: APIKey | None = None,
    target: Any = None,
    data: dict | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_api_key=actor_api_key,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data or {},
    )


# --- Periods ----------------------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month `months` later, clamped to the month's last day (Jan 31 → Feb 28)."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# --- Plans ------------------------------------------------------------------------------------


@transaction.atomic
def plans_ensure_defaults() -> list[Plan]:
    """Create whichever of the spec's default plans (the data migration's) is missing. An
    existing plan is never overwritten: admins may have edited it. Returns the created ones."""
    migration = importlib.import_module("accounts.migrations.0002_default_plans")
    shapes = importlib.import_module("accounts.migrations.0005_plan_shapes_defaults")
    created = []
    for fields in [*migration.PLANS, *shapes.PLANS]:
        fields = {**fields, **shapes.PLAN_DEFAULTS.get(fields["slug"], {})}
        plan, was_created = Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)
        if was_created:
            created.append(plan)
    return created


# --- Organizations ----------------------------------------------------------------------------


def _unique_slug(base: str) -> str:
    base = (slugify(base) or "org")[:40].strip("-") or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def organization_slug_validate(*, slug: str) -> None:
    """Raise ValidationError unless `slug` is well-formed and not taken (writes nothing)."""
    org = Organization(slug=slug, name=slug)
    try:
        org.full_clean(exclude=["name"], validate_unique=False)
    except DjangoValidationError as exc:
        raise ValidationError(
            f"Invalid organization slug {slug!r}: lowercase letters, digits and hyphens.",
            errors={"slug": ["Invalid slug."]},
        ) from exc
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError(
            f"Organization {slug!r} already exists.", errors={"slug": ["Already taken."]}
        )


@transaction.atomic
def organization_create(
    *,
    name: str,
    plan: Plan,
    slug: str | None = None,
    owner: User | None = None,
    actor: User | None = None,
    now: datetime | None = None,
) -> Organization:
    """Create an organization with its owner membership and a subscription to `plan` whose first
    period starts now."""
    name = (name or "").strip()
    if not name and not slug:
        raise ValidationError("An organization needs a name.", errors={"name": ["Required."]})
    if slug is None:
        slug = _unique_slug(name)
    else:
        organization_slug_validate(slug=slug)
    try:
        with transaction.atomic():
            org = Organization.objects.create(slug=slug, name=name or slug)
    except IntegrityError as exc:
        raise ValidationError(
            f"Organization {slug!r} already exists.", errors={"slug": ["Already taken."]}
        ) from exc
    if owner is not None:
        Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    audit_record(
        action="organization.created",
        organization=org,
        actor=actor or owner,
        target=org,
        data={"plan": plan.slug},
    )
    subscription_start(organization=org, plan=plan, actor=actor or owner, now=now)
    return org


@transaction.atomic
def subscription_start(
    *,
    organization: Organization,
    plan: Plan,
    actor: User | None = None,
    now: datetime | None = None,
    stripe_customer_id: str = "",
    stripe_subscription_id: str = "",
) -> Subscription:
    """Put the organization on `plan` with a fresh monthly period starting `now`.

    Replaces any current subscription row (one per organization) and emits
    `subscription_period_opened`, on which the credits app grants the period's credits.
    """
    now = now or timezone.now()
    sub, _ = Subscription.objects.select_for_update().update_or_create(
        organization=organization,
        defaults={
            "plan": plan,
            "status": SubscriptionStatus.ACTIVE,
            "current_period_start": now,
            "current_period_end": add_months(now, 1),
            "billing_anchor": now,
            "cancel_at_period_end": False,
            **({"stripe_customer_id": stripe_customer_id} if stripe_customer_id else {}),
            **(
                {"stripe_subscription_id": stripe_subscription_id} if stripe_subscription_id else {}
            ),
        },
    )
    audit_record(
        action="subscription.started",
        organization=organization,
        actor=actor,
        target=sub,
        data={
            "plan": plan.slug,
            "period_start": sub.current_period_start.isoformat(),
            "period_end": sub.current_period_end.isoformat(),
        },
    )
    subscription_period_opened.send(
        sender=Subscription, subscription=sub, previous_start=None, previous_end=None, now=now
    )
    return sub


@transaction.atomic
def subscription_advance_period(
    *,
    subscription: Subscription,
    now: datetime | None = None,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> Subscription | None:
    """Renew: the period that ended becomes the previous one and a new monthly period opens
    (skipping whole periods missed while nothing ran, so credits are granted once, for the
    period containing `now`). Periods follow the billing anchor's day of the month; a caller
    that knows the exact bounds (Stripe's invoice) passes them. Returns None when the period
    has not ended yet. Idempotent."""
    now = now or timezone.now()
    sub = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if sub.current_period_end > now:
        return None
    previous_start, previous_end = sub.current_period_start, sub.current_period_end
    if period_start is not None and period_end is not None:
        if period_end <= period_start:
            raise ValidationError("A period must end after it starts.")
        start, end = period_start, period_end
    else:
        anchor = sub.billing_anchor or previous_start
        months = 0
        while add_months(anchor, months + 1) <= max(now, previous_end):
            months += 1
        start, end = add_months(anchor, months), add_months(anchor, months + 1)
        start = max(start, previous_end)
    sub.current_period_start, sub.current_period_end = start, end
    sub.save(update_fields=["current_period_start", "current_period_end", "updated_at"])
    audit_record(
        action="subscription.renewed",
        organization=sub.organization,
        target=sub,
        data={
            "plan": sub.plan.slug,
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
        },
    )
    subscription_period_opened.send(
        sender=Subscription,
        subscription=sub,
        previous_start=previous_start,
        previous_end=previous_end,
        now=now,
    )
    return sub


# --- Users ------------------------------------------------------------------------------------


@transaction.atomic
def user_signup(
    *, email: str, password: str, organization_name: str, name: str = ""
) -> tuple[User, Organization]:
    """A new user with their own organization on the free plan, as its owner."""
    email = User.objects.normalize_email(email).lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError(
            "An account with this email already exists.", errors={"email": ["Already registered."]}
        )
    user = User.objects.create_user(email=email, password=password, name=name)
    plan = Plan.objects.get(slug=FREE_PLAN_SLUG)
    org = organization_create(name=organization_name, plan=plan, owner=user, actor=user)
    audit_record(action="user.signed_up", organization=org, actor=user, target=user)
    return user, org


def _send_invite(
    *, user: User, organization: Organization, invited_by: User | None, new_user: bool
) -> None:
    """Tell a user they were added. A new user (no password yet) gets a link to choose one."""
    who = invited_by.get_full_name() if invited_by else "An administrator"
    site = settings.SITE_URL.rstrip("/")
    lines = [f"{who} added you to the organization {organization.name} on {settings.SITE_NAME}."]
    if new_user:
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
        path = reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})
        lines += ["", f"Choose a password to sign in: {site}{path}"]
    else:
        lines += ["", f"Sign in as usual and pick it in the organization menu: {site}/"]
    send_mail(
        subject=f"You have been added to {organization.name} on {settings.SITE_NAME}",
        message="\n".join(lines) + "\n",
        from_email=None,
        recipient_list=[user.email],
    )


@transaction.atomic
def user_ensure(
    *,
    email: str,
    password: str | None = None,
    name: str | None = None,
    is_staff: bool | None = None,
    is_superuser: bool | None = None,
    actor: User | None = None,
) -> tuple[User, bool]:
    """The user with this email (case-insensitive), created when missing. A new user without a
    `password` gets an unusable one (they choose theirs through password reset). Given
    arguments are applied to an existing user too; None leaves a field as it is.
    Returns (user, created)."""
    email = User.objects.normalize_email(email or "").lower().strip()
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationError(
            f"Invalid email address {email!r}.", errors={"email": ["Invalid."]}
        ) from None
    user = User.objects.select_for_update().filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User.objects.create_user(
            email=email,
            password=password,
            name=name or "",
            is_staff=bool(is_staff),
            is_superuser=bool(is_superuser),
        )
        audit_record(action="user.created", actor=actor, target=user, data={"email": email})
        return user, True
    changed: list[str] = []
    for field, value in (("name", name), ("is_staff", is_staff), ("is_superuser", is_superuser)):
        if value is not None and getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if password is not None:
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
        audit_record(
            action="user.updated",
            actor=actor,
            target=user,
            data={"email": email, "fields": sorted(changed)},
        )
    return user, False


# --- Memberships ------------------------------------------------------------------------------


def _require_manager(*, organization: Organization, actor: User) -> Membership:
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None:
        raise NotFound()
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage members and API keys.")
    return membership


def _owner_count(organization: Organization) -> int:
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()


@transaction.atomic
def membership_add(
    *, organization: Organization, email: str, role: str, actor: User
) -> tuple[Membership, bool]:
    """Add a user by email. An unknown email gets an account without a password and an invite
    email with a link to choose one. Returns (membership, user_was_created)."""
    acting = _require_manager(organization=organization, actor=actor)
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.", errors={"role": ["Unknown role."]})
    if role == Role.OWNER and acting.role != Role.OWNER:
        raise PermissionDenied("Only owners can add owners.")
    email = User.objects.normalize_email(email or "").lower().strip()
    if not email or "@" not in email:
        raise ValidationError("Enter a valid email address.", errors={"email": ["Invalid."]})
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User.objects.create_user(email=email, password=None)
    elif Membership.objects.filter(organization=organization, user=user).exists():
        raise ValidationError(
            f"{email} is already a member.", errors={"email": ["Already a member."]}
        )
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    audit_record(
        action="membership.added",
        organization=organization,
        actor=actor,
        target=membership,
        data={"email": email, "role": role, "invited": created},
    )
    transaction.on_commit(
        lambda: _send_invite(
            user=user, organization=organization, invited_by=actor, new_user=created
        )
    )
    return membership, created


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: User) -> Membership:
    """Owners may change any role; admins may move people between admin and member only.
    The last owner cannot be demoted."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    acting = _require_manager(organization=membership.organization, actor=actor)
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.", errors={"role": ["Unknown role."]})
    if acting.role != Role.OWNER and Role.OWNER in (role, membership.role):
        raise PermissionDenied("Only owners can grant or take away the owner role.")
    if (
        membership.role == Role.OWNER
        and role != Role.OWNER
        and _owner_count(membership.organization) <= 1
    ):
        raise ValidationError("An organization must keep at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        action="membership.role_changed",
        organization=membership.organization,
        actor=actor,
        target=membership,
        data={"email": membership.user.email, "from": old, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    """Remove a member. Anyone may leave; owners remove anyone, admins remove non-owners.
    The last owner cannot be removed."""
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    org = membership.organization
    if membership.user_id != actor.pk:
        acting = _require_manager(organization=org, actor=actor)
        if membership.role == Role.OWNER and acting.role != Role.OWNER:
            raise PermissionDenied("Only owners can remove an owner.")
    if membership.role == Role.OWNER and _owner_count(org) <= 1:
        raise ValidationError("An organization must keep at least one owner.")
    audit_record(
        action="membership.removed",
        organization=org,
        actor=actor,
        target=membership,
        data={"email": membership.user.email, "role": membership.role},
    )
    TeamMembership.objects.filter(team__organization=org, user_id=membership.user_id).delete()
    membership.delete()


@transaction.atomic
def membership_ensure(
    *, organization: Organization, user: User, role: str, actor: User | None = None
) -> Membership:
    """System-level (commands, seeding): make `user` a member of `organization` with `role`,
    adding or changing the membership as needed. Keeps the last-owner rule."""
    if role not in Role.values:
        raise ValidationError(f"Unknown role {role!r}.", errors={"role": ["Unknown role."]})
    membership = (
        Membership.objects.select_for_update().filter(organization=organization, user=user).first()
    )
    if membership is None:
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        audit_record(
            action="membership.added",
            organization=organization,
            actor=actor,
            target=membership,
            data={"email": user.email, "role": role, "invited": False},
        )
        return membership
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and _owner_count(organization) <= 1:
        raise ValidationError("An organization must keep at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        action="membership.role_changed",
        organization=organization,
        actor=actor,
        target=membership,
        data={"email": user.email, "from": old, "to": role},
    )
    return membership


# --- API keys ---------------------------------------------------------------------------------


@transaction.atomic
def api_key_create(
    *, organization: Organization, name: str, actor: User | None
) -> tuple[APIKey, str]:
    """Create a key and return it with its raw value, which is never stored nor shown again."""
    if actor is not None:
        _require_manager(organization=organization, actor=actor)
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the key a name.", errors={"name": ["Required."]})
    if len(name) > 100:
        raise ValidationError("Name is too long.", errors={"name": ["At most 100 characters."]})
    prefix = secrets.token_hex(4)
    while APIKey.objects.filter(prefix=prefix).exists():  # pragma: no cover - 2^-32
        prefix = secrets.token_hex(4)
    raw_key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = APIKey.objects.create(
        organization=organization,
        name=name,
        prefix=prefix,
        hashed_key=hash_api_key(raw_key),
        created_by=actor,
    )
    audit_record(
        action="api_key.created",
        organization=organization,
        actor=actor,
        target=key,
        data={"name": name, "prefix": prefix},
    )
    return key, raw_key


@transaction.atomic
def api_key_revoke(*, api_key: APIKey, actor: User | None, as_staff: bool = False) -> APIKey:
    """Revoke a key (idempotent: an already revoked key is left as it is).

    `actor` must manage the key's organization, unless `as_staff` (the Django admin acting for
    support), which requires an active staff user instead."""
    if as_staff:
        if actor is None or not (actor.is_active and actor.is_staff):
            raise PermissionDenied("Only staff can revoke keys of any organization.")
    elif actor is not None:
        _require_manager(organization=api_key.organization, actor=actor)
    updated = APIKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    api_key.refresh_from_db()
    if updated:
        keycache.forget_all()  # the next request with this key reads PostgreSQL: 401
        audit_record(
            action="api_key.revoked",
            organization=api_key.organization,
            actor=actor,
            target=api_key,
            data={
                "name": api_key.name,
                "prefix": api_key.prefix,
                **({"via": "admin"} if as_staff else {}),
            },
        )
    return api_key


# Key id → time.monotonic() of this process's last last_used_at write (api_key_touch). The key
# may come from the key cache with an older last_used_at: this keeps it to one UPDATE per key,
# process and resolution. Bounded: cleared when it grows past _TOUCHED_MAX keys.
_touched: dict[int, float] = {}
_TOUCHED_MAX = 10_000


def api_key_touch(*, api_key: APIKey) -> None:
    """Record use, at most once per API_KEY_LAST_USED_RESOLUTION_S: per process, at most one
    conditional UPDATE per key in that time, which writes only when no process wrote within it."""
    now = timezone.now()
    resolution = settings.API_KEY_LAST_USED_RESOLUTION_S
    horizon = now - timedelta(seconds=resolution)
    if api_key.last_used_at is not None and api_key.last_used_at > horizon:
        return
    mono = time.monotonic()
    last = _touched.get(api_key.pk)
    if last is not None and mono - last < resolution:
        return
    if len(_touched) >= _TOUCHED_MAX:
        _touched.clear()
    _touched[api_key.pk] = mono
    APIKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=horizon).update(last_used_at=now)
    api_key.last_used_at = now
