"""OpenAPI pieces every endpoint shares: the RFC 9457 problem body and its error responses.

    @extend_schema(responses={200: ThingSerializer, **problem_responses(401, 403, 404, 429)})

documents each listed status as `application/problem+json` with the `Problem` component and
one example per error `code` the status can carry (429: `quota_exceeded` and `rate_limited`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from config import errors
from config.api.exceptions import PROBLEM_CONTENT_TYPE, problem

ERROR_CODES = ", ".join(
    f"`{e.code}` ({e.status_code})" for e in (*errors.ALL_ERRORS, *errors.PLUMBING_ERRORS)
)

# The statuses every authenticated endpoint can answer with.
AUTH_ERRORS = (401, 403, 429)


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details. Extension members (e.g. `limit`, `reason`) may follow."""

    type = serializers.CharField(
        help_text="URI reference of the problem type; GET it for a description of the code."
    )
    title = serializers.CharField(help_text="Short summary of the problem type.")
    status = serializers.IntegerField(help_text="The HTTP status code.")
    detail = serializers.CharField(help_text="What went wrong with this request.")
    code = serializers.CharField(help_text=f"Machine-readable error code: {ERROR_CODES}.")
    instance = serializers.CharField(required=False, help_text="The request path.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Messages per field (`validation_error`).",
    )


def _example(error: type[errors.ServiceError]) -> OpenApiExample:
    return OpenApiExample(
        error.code,
        value=problem(
            status=error.status_code,
            code=error.code,
            title=error.title,
            detail=error.default_detail,
        ),
        response_only=True,
        media_type=PROBLEM_CONTENT_TYPE,
        status_codes=[str(error.status_code)],
    )


def problem_responses(*statuses: int) -> dict[Any, OpenApiResponse]:
    """`extend_schema(responses=...)` entries for the given error statuses."""
    out: dict[Any, OpenApiResponse] = {}
    for status in statuses:
        kinds = [
            e for e in (*errors.ALL_ERRORS, *errors.PLUMBING_ERRORS) if e.status_code == status
        ]
        if not kinds:
            raise ValueError(f"No error of the project has HTTP status {status}.")
        out[(status, PROBLEM_CONTENT_TYPE)] = OpenApiResponse(
            response=ProblemSerializer,
            description="; ".join(f"`{e.code}`: {e.default_detail}" for e in kinds),
            examples=[_example(e) for e in kinds],
        )
    return out
