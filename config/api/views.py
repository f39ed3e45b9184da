"""Plumbing endpoints: health check and the problem-type descriptions errors link to."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import Http404, JsonResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config import errors

logger = logging.getLogger(__name__)

# The health check asks the broker with this timeout (seconds) and no retry.
BROKER_TIMEOUT_S = 1.0


def _database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:  # report, don't raise: this is the health check
        logger.warning("healthz: database unreachable (%s)", exc.__class__.__name__)
        return "down"


def _redis_check() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    try:
        cache.set("healthz", "1", timeout=5)
        if cache.get("healthz") != "1":
            raise RuntimeError("read back failed")
        return "ok"
    except Exception as exc:
        logger.warning("healthz: Redis (cache) unreachable (%s)", exc.__class__.__name__)
        return "down"


def _broker_check() -> str:
    """Open a connection to the Celery broker (kombu's Redis transport pings on connect), no
    retries, a short timeout."""
    from config.celery_app import app

    if app.conf.task_always_eager:
        return "not used"
    try:
        with app.connection_for_write(connect_timeout=BROKER_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_S)
        return "ok"
    except Exception as exc:
        logger.warning("healthz: broker unreachable (%s)", exc.__class__.__name__)
        return "down"


def healthz(request):
    """Which part is down: `{"status", "checks": {"database", "redis", "broker"}}`, each check
    "ok" or "down" ("not configured" / "not used" when the deployment has none).

    * database down → 503, status "error": nothing is accepted without PostgreSQL (the source
      of truth for credits, quotas and jobs), so the load balancer should stop sending traffic;
    * only Redis (cache) or the broker down → 200, status "degraded": submissions are still
      accepted (rate limits fall back to an in-process limiter, jobs stay queued until the
      broker returns), so the instance must stay in rotation — see docs/reliability.md;
    * everything answers → 200, status "ok".
    """
    checks = {"database": _database_check(), "redis": _redis_check(), "broker": _broker_check()}
    if checks["database"] != "ok":
        status, code = "error", 503
    elif "down" in checks.values():
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "checks": checks}, status=code)


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
