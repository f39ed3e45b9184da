"""Looking a presented staff API token up."""

from __future__ import annotations

import hmac

from django.db.models import QuerySet

from accounts.keys import hash_api_key, split_api_key
from operations.models import StaffAPIToken

STAFF_TOKEN_PREFIX = "gpus_"


def is_staff_token(raw: str) -> bool:
    """Whether `raw` has a staff token's shape (so other Bearer credentials pass through)."""
    return raw.startswith(STAFF_TOKEN_PREFIX)


def staff_token_from_raw(*, raw_token: str) -> StaffAPIToken | None:
    """The active token whose value is `raw_token` and whose user is still active staff, or
    None. Compares digests in constant time."""
    parts = split_api_key(raw_token, kind=STAFF_TOKEN_PREFIX)
    if parts is None:
        return None
    token = (
        StaffAPIToken.objects.select_related("user")
        .filter(prefix=parts[0], revoked_at__isnull=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.hashed_key, hash_api_key(raw_token)):
        return None
    if not (token.user.is_active and token.user.is_staff):
        return None
    return token


def staff_tokens_of(*, user) -> QuerySet[StaffAPIToken]:
    return StaffAPIToken.objects.filter(user=user)
