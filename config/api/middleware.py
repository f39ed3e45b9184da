"""Problem details for /api/ responses that never reach DRF (unknown URL, server error)."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import Http404

from config import errors
from config.api.exceptions import problem, problem_response

logger = logging.getLogger(__name__)


class ProblemJSONMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/")
        ):
            return problem_response(
                problem(
                    status=404,
                    code="not_found",
                    title="Not found",
                    detail="No such endpoint.",
                    instance=request.path,
                )
            )
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, Http404):
            return problem_response(
                problem(
                    status=404,
                    code="not_found",
                    title="Not found",
                    detail="No such object.",
                    instance=request.path,
                )
            )
        if isinstance(exception, RequestDataTooBig):
            error = errors.PayloadTooLarge()
            return problem_response(
                problem(
                    status=error.status_code,
                    code=error.code,
                    title=error.title,
                    detail=error.detail,
                    instance=request.path,
                )
            )
        logger.exception("Unhandled error on %s", request.path)
        return problem_response(
            problem(
                status=500,
                code="server_error",
                title="Internal server error",
                detail="An unexpected error occurred.",
                instance=request.path,
            )
        )
