"""Generations endpoints of API v1: the model catalog and the caller's generation jobs.

Thin views: the organization comes from the API key (or the session's active organization);
submission and cancel go through `generations.services` (validation, quotas in the spec's
order, the pinned hold, idempotency), reads through org-scoped `generations.selectors`.

Quota order on submission: API access by plan (permission class, 403) → rate limit per API key
(the global `APIKeyRateThrottle`, which counts every request exactly once; the service is
called without its own rate-limit check) → daily cap → concurrent jobs → credits (the service's
`spend_authorize`). A refused request writes nothing.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf
from django.urls import reverse as django_reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses
from generations import selectors, services
from generations.api.serializers import (
    AIModelSerializer,
    GenerationCancelSerializer,
    GenerationCreateSerializer,
    JobListQuerySerializer,
    JobSerializer,
    QuoteSerializer,
)
from generations.quotes import generation_quote

REPLAYED_HEADER = "Idempotent-Replayed"

JOB_ID = OpenApiParameter(
    "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255},
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Optional, 1–255 characters, unique per organization. Sending the same key with the "
        "same body again returns the same job (202, `Idempotent-Replayed: true`) without "
        "holding credits again; the same key with a different body is a 409 "
        "`idempotency_conflict`."
    ),
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    response=[202],
    description="URL of the job (GET it to follow its status).",
)
REPLAYED = OpenApiParameter(
    REPLAYED_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[202],
    enum=["true"],
    description="Present when the response replays an earlier request with the same key.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429, 503],
    description="Seconds to wait before retrying.",
)

JOB_EXAMPLE = {
    "id": "0b9c6f1e-3f5a-4a57-9f51-2f0c3b7d9a11",
    "status": "queued",
    "model": "sdxl",
    "params": {"prompt": "a lighthouse at dawn", "seed": 42},
    "credits_held": "5.000",
    "credits_charged": None,
    "actual_units": None,
    "cached": False,
    "node": "",
    "created_at": "2026-01-05T10:00:00Z",
    "started_at": None,
    "finished_at": None,
    "result": None,
    "error": None,
}


_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


@lru_cache(maxsize=32)
def _job_path_template(script_prefix: str, urlconf) -> str:
    return django_reverse("api-generation-detail", args=[_PLACEHOLDER], urlconf=urlconf)


def job_location(request, job_id) -> str:
    """The job's absolute URL, as `reverse("api-generation-detail", request=request)` builds it:
    the path is reversed once per script prefix and URLconf (a UUID needs no quoting), not
    resolved on every submission (issue 16)."""
    template = _job_path_template(get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF)
    return request.build_absolute_uri(template.replace(_PLACEHOLDER, str(job_id)))


class ModelListView(APIView):
    @extend_schema(
        operation_id="models_list",
        tags=["models"],
        summary="Models and their prices",
        description=(
            "The models the organization can generate with: active, on a GPU pool, with a "
            "price in force. `credits` is the current price of one generation (a job is charged "
            "the price in force when it was accepted); `params_schema` is the JSON Schema "
            "`params` must satisfy. Ordered by slug; not paginated (the catalog is small)."
        ),
        responses={200: AIModelSerializer(many=True), **problem_responses(*AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request):
        return Response(AIModelSerializer(selectors.models_active(), many=True).data)


class GenerationListCreateView(ListAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        query = JobListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.job_list(
            organization=self.request.organization,
            status=query.validated_data.get("status"),
            model=query.validated_data.get("model"),
        )

    @extend_schema(
        operation_id="generations_list",
        tags=["generations"],
        summary="Generation jobs",
        description=(
            "The organization's jobs, newest first, optionally filtered by `status` and "
            "`model`. Cursor-paginated: follow `next` / `previous`."
        ),
        parameters=[JobListQuerySerializer],
        responses={200: JobSerializer(many=True), **problem_responses(400, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="generations_create",
        tags=["generations"],
        summary="Submit a generation",
        description=(
            "Accepts a job: validates `params` against the model's schema, checks the plan's "
            "quotas in order (API access, rate limit per key, daily generation cap, concurrent "
            "jobs, credits and overage) and holds the model's current price, then queues it "
            "(202). Poll `GET /api/v1/generations/{id}/` until it is `succeeded` (charged the "
            "held price once) or `failed`/`cancelled` (released). Free-plan submissions may be "
            "refused with 503 `server_busy` and `Retry-After` while the model's queue is "
            "saturated. A refused request holds and writes nothing."
        ),
        request=GenerationCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, LOCATION, REPLAYED, RETRY_AFTER],
        responses={
            202: OpenApiResponse(
                JobSerializer,
                description="Accepted (or replayed by Idempotency-Key): the job.",
                examples=[OpenApiExample("queued", value=JOB_EXAMPLE, response_only=True)],
            ),
            **problem_responses(400, 401, 402, 403, 409, 413, 429, 503),
        },
        examples=[
            OpenApiExample(
                "submit",
                value={"model": "sdxl", "params": {"prompt": "a lighthouse at dawn", "seed": 42}},
                request_only=True,
            )
        ],
    )
    def post(self, request, *args, **kwargs):
        body = GenerationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job, created = services.generation_submit(
            organization=request.organization,
            model_slug=body.validated_data["model"],
            params=body.validated_data["params"],
            api_key=request_api_key(request),
            user=request.user,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        headers = {"Location": job_location(request, job.pk)}
        if not created:
            headers[REPLAYED_HEADER] = "true"
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers=headers)


QUOTE_EXAMPLE = {
    "model": "clip-video",
    "credits": "11.000",
    "breakdown": [
        {"param": None, "kind": "base", "credits": "2"},
        {"param": "duration_s", "kind": "credits", "quantity": "6", "rate": "1.5", "credits": "9"},
    ],
    "follows_request": True,
    "unit": "second",
    "units": "6",
    "rate_version": 12,
    "effective_from": "2026-01-05T10:00:00Z",
}


class GenerationQuoteView(APIView):
    @extend_schema(
        operation_id="generations_quote",
        tags=["generations"],
        summary="Price a generation without submitting it",
        description=(
            "The same body as a submission, checked the same way (unknown model, `params` "
            "against the model's schema: the same 400 errors), priced with the version a "
            "submission would pin now. Holds nothing and writes nothing; counted by the same "
            "rate limit per key as every request. A submission with the same body under the "
            "same price version holds exactly `credits`. For a model whose price follows the "
            "request (per second, per megapixel, per step, per image) `breakdown` lists each "
            "term. The plan's quotas and credits are not checked here (a fair-use unlimited "
            "plan pays nothing; a cached identical result costs the model's cache price). "
            "The plan's entitlements are checked as a submission checks them (403 "
            "`permission_denied`, `limit: entitlement:<name>`), and the organization's "
            "contract price override applies (`list_credits` is the price before it)."
        ),
        request=GenerationCreateSerializer,
        responses={
            200: OpenApiResponse(
                QuoteSerializer,
                description="The price.",
                examples=[OpenApiExample("quote", value=QUOTE_EXAMPLE, response_only=True)],
            ),
            **problem_responses(400, 413, *AUTH_ERRORS),
        },
        examples=[
            OpenApiExample(
                "quote",
                value={"model": "clip-video", "params": {"prompt": "waves", "duration_s": 6}},
                request_only=True,
            )
        ],
    )
    def post(self, request):
        body = GenerationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        quote = generation_quote(
            model_slug=body.validated_data["model"],
            params=body.validated_data["params"],
            organization=request.organization,
        )
        return Response(QuoteSerializer(quote).data)


class GenerationDetailView(APIView):
    @extend_schema(
        operation_id="generations_retrieve",
        tags=["generations"],
        summary="One generation job",
        description="The job with its status, credits held and charged, result or error.",
        parameters=[JOB_ID],
        responses={200: JobSerializer, **problem_responses(404, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request, id):
        job = selectors.job_get(organization=request.organization, job_id=id)
        return Response(JobSerializer(job).data)


class GenerationCancelView(APIView):
    @extend_schema(
        operation_id="generations_cancel",
        tags=["generations"],
        summary="Cancel a queued generation",
        description=(
            "Cancels a job that has not started, releasing its hold. Cancelling a cancelled "
            "job changes nothing (200). A running or finished job cannot be cancelled (400 "
            "`validation_error`)."
        ),
        request=None,
        parameters=[JOB_ID],
        responses={200: JobSerializer, **problem_responses(400, 404, 413, *AUTH_ERRORS)},
    )
    def post(self, request, id):
        if request.content_type.startswith("application/json"):  # no body is needed
            GenerationCancelSerializer(data=request.data).is_valid(raise_exception=True)
        job = selectors.job_get(organization=request.organization, job_id=id)
        actor = request.user if request.user is not None and request.user.is_authenticated else None
        job = services.generation_cancel(job=job, actor=actor)
        return Response(JobSerializer(job).data)
