"""The project's one error hierarchy.

Services raise these; the API renders them as RFC 9457 problem details
(`config.api.exceptions`), the web UI as messages / form errors, commands as CommandError.
Every error has a machine `code` (fixed by the spec) and an HTTP `status_code`.

A refused submission also names the limit that blocked it (SPEC §7): `limit` (`api_access`,
`rate_limit`, `daily_cap`, `concurrency`, `budget:<scope>:<id>`, `velocity`, `credits`,
`server_busy`) and, where they exist, `limit_value`, `used` and `resets_at` — one shape for
all, built by `limit_details`. Errors with a fixed limit (`limit_name`) carry it without being told.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


def limit_details(
    *,
    name: str,
    value: Any = None,
    used: Any = None,
    resets_at: datetime | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The extra members of a refusal that say which limit blocked it: `limit` (its name),
    `limit_value`, `used` and `resets_at` (ISO 8601 UTC) where they exist. Credits are
    strings (exact decimals), counts are integers."""
    out: dict[str, Any] = {"limit": name}
    for key, item in (("limit_value", value), ("used", used), *more.items()):
        if item is not None:
            out[key] = str(item) if isinstance(item, Decimal) else item
    if resets_at is not None:
        out["resets_at"] = resets_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return out


class ServiceError(Exception):
    code = "error"
    status_code = 400
    title = "Error"
    default_detail = "The request could not be completed."
    limit_name: str | None = None  # the limit a refusal of this class always names (SPEC §7)

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.default_detail
        self.errors = errors or {}
        self.headers = headers or {}
        self.extra = extra
        if self.limit_name is not None:
            self.extra.setdefault("limit", self.limit_name)
        super().__init__(self.detail)


class ValidationError(ServiceError):
    code = "validation_error"
    status_code = 400
    title = "Invalid request"
    default_detail = "The request is not valid."


class AuthenticationFailed(ServiceError):
    code = "authentication_failed"
    status_code = 401
    title = "Authentication failed"
    default_detail = "Missing, invalid or revoked credentials."


class InsufficientCredits(ServiceError):
    code = "insufficient_credits"
    status_code = 402
    title = "Insufficient credits"
    default_detail = "Not enough credits available for this operation."
    limit_name = "credits"


class PermissionDenied(ServiceError):
    code = "permission_denied"
    status_code = 403
    title = "Permission denied"
    default_detail = "You are not allowed to do this."


class NotFound(ServiceError):
    code = "not_found"
    status_code = 404
    title = "Not found"
    default_detail = "No such object."


class IdempotencyConflict(ServiceError):
    code = "idempotency_conflict"
    status_code = 409
    title = "Idempotency key reused"
    default_detail = "This Idempotency-Key was already used with a different request."


class QuotaExceeded(ServiceError):
    code = "quota_exceeded"
    status_code = 429
    title = "Quota exceeded"
    default_detail = "A plan quota has been reached."


class RateLimited(ServiceError):
    code = "rate_limited"
    status_code = 429
    title = "Rate limited"
    default_detail = "Too many requests for this API key."
    limit_name = "rate_limit"


class ServerBusy(ServiceError):
    code = "server_busy"
    status_code = 503
    title = "Server busy"
    default_detail = "The model's queue is saturated. Retry later."
    limit_name = "server_busy"


class PayloadTooLarge(ServiceError):
    """Not one of the spec's codes: the plumbing's answer to a body over the upload limit."""

    code = "payload_too_large"
    status_code = 413
    title = "Request body too large"
    default_detail = "The request body is larger than the server accepts."

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        if detail is None:
            from django.conf import settings

            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            detail = f"The request body is larger than {limit:,} bytes." if limit else None
        super().__init__(detail, **kwargs)


ALL_ERRORS: tuple[type[ServiceError], ...] = (
    ValidationError,
    AuthenticationFailed,
    InsufficientCredits,
    PermissionDenied,
    NotFound,
    IdempotencyConflict,
    QuotaExceeded,
    RateLimited,
    ServerBusy,
)

# Errors of the HTTP plumbing, beyond the spec's codes (described at /api/problems/<code>/ too).
PLUMBING_ERRORS: tuple[type[ServiceError], ...] = (PayloadTooLarge,)
