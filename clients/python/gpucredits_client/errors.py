"""Typed errors: one class per problem `code` of the API (RFC 9457 problem details)."""

from __future__ import annotations

from typing import Any


class GPUCreditsError(Exception):
    """Base class of everything this client raises."""


class TransportError(GPUCreditsError):
    """The server could not be reached (connection refused, reset, timeout) after all retries."""


class WaitTimeout(GPUCreditsError):
    """`Client.wait()` gave up before the generation reached a final status."""

    def __init__(self, generation_id: str, last_status: str, timeout: float) -> None:
        super().__init__(f"generation {generation_id} still {last_status} after {timeout:g} s")
        self.generation_id = generation_id
        self.last_status = last_status
        self.timeout = timeout


class APIError(GPUCreditsError):
    """A problem+json answer. `code` is the machine code, `detail` the human message;
    `problem` holds the whole body (extension members such as `limit` included)."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        detail: str,
        title: str = "",
        type: str = "",
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type = type
        self.problem = problem or {}
        self.retry_after = retry_after

    @property
    def errors(self) -> dict[str, list[str]]:
        """Messages per field (`validation_error`)."""
        return dict(self.problem.get("errors") or {})


class ValidationError(APIError):
    """400 `validation_error`."""


class AuthenticationError(APIError):
    """401 `authentication_failed`."""


class InsufficientCredits(APIError):
    """402 `insufficient_credits`."""


class PermissionDenied(APIError):
    """403 `permission_denied`."""


class NotFound(APIError):
    """404 `not_found`."""


class IdempotencyConflict(APIError):
    """409 `idempotency_conflict`: the same Idempotency-Key was sent with a different body."""


class PayloadTooLarge(APIError):
    """413 `payload_too_large`."""


class QuotaExceeded(APIError):
    """429 `quota_exceeded`: a plan limit (daily cap, concurrency, budget) was reached."""


class RateLimited(APIError):
    """429 `rate_limited`: too many requests; `retry_after` says when to try again."""


class ServerBusy(APIError):
    """503 `server_busy`: the queue is full; `retry_after` says when to try again."""


class ServerError(APIError):
    """Any other 5xx answer (after the retries)."""


ERRORS_BY_CODE: dict[str, type[APIError]] = {
    "validation_error": ValidationError,
    "authentication_failed": AuthenticationError,
    "not_authenticated": AuthenticationError,
    "insufficient_credits": InsufficientCredits,
    "permission_denied": PermissionDenied,
    "not_found": NotFound,
    "idempotency_conflict": IdempotencyConflict,
    "payload_too_large": PayloadTooLarge,
    "quota_exceeded": QuotaExceeded,
    "rate_limited": RateLimited,
    "server_busy": ServerBusy,
}

ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    402: InsufficientCredits,
    403: PermissionDenied,
    404: NotFound,
    409: IdempotencyConflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServerBusy,
}


def error_for(
    status: int, body: Any, *, retry_after: float | None = None, reason: str = ""
) -> APIError:
    """The typed error for an answer with this status and (parsed JSON or None) body."""
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("code") or "")
    cls = ERRORS_BY_CODE.get(code) or ERRORS_BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(
        status=status,
        code=code or ("server_error" if status >= 500 else "error"),
        detail=str(problem.get("detail") or reason or f"HTTP {status}"),
        title=str(problem.get("title") or ""),
        type=str(problem.get("type") or ""),
        problem=problem,
        retry_after=retry_after,
    )
