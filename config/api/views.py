"""Plumbing endpoints: health check and the problem-type descriptions errors link to."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import Http404, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config import errors


def healthz(request):
    """200 when the database (and Redis, when configured) answer; 503 otherwise."""
    checks: dict[str, str] = {}
    ok = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this is the health check
        checks["database"] = f"error: {exc.__class__.__name__}"
        ok = False
    if settings.REDIS_URL:
        try:
            cache.set("healthz", "1", timeout=5)
            if cache.get("healthz") != "1":
                raise RuntimeError("read back failed")
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
            ok = False
    else:
        checks["redis"] = "not configured"
    return JsonResponse(
        {"status": "ok" if ok else "error", "checks": checks}, status=200 if ok else 503
    )


class ProblemTypeView(APIView):
    """What an error `code` means (the `type` URI of every problem response)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request, code: str):
        for error in (*errors.ALL_ERRORS, *errors.PLUMBING_ERRORS):
            if error.code == code:
                return Response(
                    {
                        "code": code,
                        "status": error.status_code,
                        "title": error.title,
                        "description": error.default_detail,
                    }
                )
        raise Http404
