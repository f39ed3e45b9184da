"""`GET /metrics` (spec §7): Prometheus text format, for staff or the metrics token, never
anonymous. Read-only: answering writes no row."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from operations.metrics import exposition

logger = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"


def _bearer(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _token_ok(token: str) -> bool:
    expected = settings.METRICS_TOKEN
    # Bytes, so that a non-ASCII token is a mismatch rather than a TypeError.
    return bool(expected) and hmac.compare_digest(
        token.encode("utf-8", "replace"), expected.encode("utf-8")
    )


def _refused(status: int, body: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=TEXT)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@csrf_exempt
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = _bearer(request)
    if token is not None:
        if not _token_ok(token):
            return _refused(401, "Invalid metrics token.\n")
    elif not request.user.is_authenticated:
        return _refused(401, "Sign in as staff or send the metrics token.\n")
    elif not request.user.is_staff:
        return _refused(403, "Staff only.\n")
    try:
        body = exposition()
    except DatabaseError:
        logger.exception("metrics: database read failed")
        return HttpResponse("Metrics are unavailable right now.\n", status=503, content_type=TEXT)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
