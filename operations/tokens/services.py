"""Staff API tokens: create (the raw value is returned once, never stored), revoke, touch.

Each creation and revocation writes an audit row (`accounts.services.audit_record`, no
organization: staff tokens belong to no organization), in the same transaction. Not durable:
the admin's add view already runs inside a transaction of its own."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.keys import hash_api_key
from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from operations.models import StaffAPIToken
from operations.tokens.selectors import STAFF_TOKEN_PREFIX


def staff_token_create(*, user: User, name: str, actor: User | None) -> tuple[StaffAPIToken, str]:
    """A new token for the staff `user`, with its raw value (shown once)."""
    if not (user.is_active and user.is_staff):
        raise ValidationError(
            "Staff API tokens are for active staff users only.",
            errors={"user": ["Not an active staff user."]},
        )
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the token a name.", errors={"name": ["Required."]})
    if len(name) > 100:
        raise ValidationError("Name is too long.", errors={"name": ["At most 100 characters."]})
    with transaction.atomic():
        prefix = secrets.token_hex(4)
        while StaffAPIToken.objects.filter(prefix=prefix).exists():  # pragma: no cover
            prefix = secrets.token_hex(4)
        raw = f"{STAFF_TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        token = StaffAPIToken.objects.create(
            user=user, name=name, prefix=prefix, hashed_key=hash_api_key(raw)
        )
        audit_record(
            action="staff_token.created",
            actor=actor,
            target=token,
            data={"name": name, "prefix": prefix, "user_id": user.pk},
        )
    return token, raw


def staff_token_revoke(*, token: StaffAPIToken, actor: User | None) -> StaffAPIToken:
    """Revoke a token (idempotent)."""
    with transaction.atomic():
        updated = StaffAPIToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            audit_record(
                action="staff_token.revoked",
                actor=actor,
                target=token,
                data={"name": token.name, "prefix": token.prefix, "user_id": token.user_id},
            )
    token.refresh_from_db()
    return token


def staff_token_touch(*, token: StaffAPIToken) -> None:
    """Record use, at most once per API_KEY_LAST_USED_RESOLUTION_S (one conditional UPDATE)."""
    now = timezone.now()
    horizon = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_S)
    if token.last_used_at is not None and token.last_used_at > horizon:
        return
    StaffAPIToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=horizon).update(
        last_used_at=now
    )
    token.last_used_at = now
