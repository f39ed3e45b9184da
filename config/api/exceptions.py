"""RFC 9457 problem details for every API error, with the spec's machine `code`s.

`problem_exception_handler` is DRF's EXCEPTION_HANDLER: it renders our ServiceError hierarchy,
DRF's own exceptions and Django's Http404/PermissionDenied the same way. A refused request
writes nothing: services run in their own transactions, which the error has already rolled back
when it reaches the handler (and under ATOMIC_REQUESTS, DRF's `set_rollback` marks the request's
transaction, as DRF's own handler does).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.views import set_rollback

from config import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"

_STATUS_TITLES = {
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    415: ("unsupported_media_type", "Unsupported media type"),
    500: ("server_error", "Internal server error"),
}


def problem_type(code: str) -> str:
    return f"/api/problems/{code}/"


def problem(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str = "",
    errors_: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors_:
        body["errors"] = errors_
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail: Any) -> dict[str, list[str]]:
    """DRF's nested ValidationError detail → {"field": ["message", ...]} (dotted paths)."""
    out: dict[str, list[str]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                out.setdefault(path or "non_field_errors", []).extend(str(v) for v in value)
            else:
                for i, sub in enumerate(value):
                    walk(sub, f"{path}.{i}" if path else str(i))
        else:
            out.setdefault(path or "non_field_errors", []).append(str(value))

    walk(detail, "")
    return out


FIELD_MAX = 60  # characters of a field name quoted in a validation problem
MESSAGE_MAX = 200  # characters of one message


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_service_error(exc: Exception) -> errors.ServiceError | None:
    """Map DRF and Django exceptions onto the project's hierarchy (None: not ours to handle)."""
    if isinstance(exc, errors.ServiceError):
        return exc
    if isinstance(exc, RequestDataTooBig):
        return errors.PayloadTooLarge()
    if isinstance(exc, Http404 | drf.NotFound):
        return errors.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return errors.PermissionDenied()
    if isinstance(exc, drf.ValidationError):
        # Field names and messages may quote what was sent (an unknown key, an invalid
        # choice): cut them short, so a huge input is never echoed back whole.
        flat = {
            _cut(key, FIELD_MAX): [_cut(m, MESSAGE_MAX) for m in messages]
            for key, messages in _flatten(exc.detail).items()
        }
        first = next(iter(flat.items()), None)
        detail = f"{first[0]}: {first[1][0]}" if first else "Invalid request."
        return errors.ValidationError(detail, errors=flat)
    if isinstance(exc, drf.ParseError):
        return errors.ValidationError(f"Malformed request body: {exc.detail}")
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return errors.AuthenticationFailed(str(exc.detail))
    if isinstance(exc, drf.PermissionDenied):
        return errors.PermissionDenied(str(exc.detail))
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)
        return errors.RateLimited(str(exc.detail), headers={"Retry-After": str(wait)})
    if isinstance(exc, DatabaseOperationalError | DatabaseInterfaceError):
        # The connection to PostgreSQL was lost mid-request (a failover, a terminated backend):
        # the transaction rolled back, so retrying is safe — 503 with Retry-After, not 500
        # (docs/reliability.md, "Degraded modes"; found by bench/chaos.py).
        return errors.ServerBusy(
            "The database connection was interrupted. Retry in a few seconds.",
            headers={"Retry-After": "2"},
        )
    return None


def problem_exception_handler(exc: Exception, context: dict) -> JsonResponse | None:
    request = context.get("request")
    instance = request.path if request is not None else ""
    error = to_service_error(exc)
    if error is None and isinstance(exc, drf.APIException):
        code, title = _STATUS_TITLES.get(exc.status_code, ("error", "Error"))
        set_rollback()
        body = problem(
            status=exc.status_code,
            code=code,
            title=title,
            detail=str(exc.detail),
            instance=instance,
        )
        return problem_response(body)
    if error is None:
        return None  # unexpected: Django's 500 handling (ProblemJSONMiddleware renders it)
    set_rollback()
    body = problem(
        status=error.status_code,
        code=error.code,
        title=error.title,
        detail=error.detail,
        instance=instance,
        errors_=error.errors,
        extra=error.extra,
    )
    headers = dict(error.headers)
    if error.status_code == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="api"')
    return problem_response(body, headers)
