"""`GET /api/v1/generations/<id>/output/<filename>`: a simulated job's output file.

The simulated backend (the default of `make run` and the demo) has no GPU and writes no file:
its result's `url` points here, and the file is a small placeholder of the job's output type
made on the fly from its seed (generations/backends/placeholders.py). Only the job's
organization may fetch it (an API key, or a member's session): another tenant's job, a job that
has no such file and a malformed id are all the same 404. Jobs of other backends link to their
own files (a ComfyUI node's `/view`, or the model's published output folder).
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.views import APIView

from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import NotFound
from generations import selectors
from generations.backends.placeholders import KINDS, placeholder
from generations.backends.simulated import output_url
from generations.models import JobStatus


class _AnyMediaRenderer(BaseRenderer):
    """Lets a client that asks for the file's type (`Accept: audio/wav`) past content
    negotiation; errors are still JSON problem details."""

    media_type = "*/*"
    format = "file"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else json.dumps(data).encode()


class GenerationOutputView(APIView):
    renderer_classes = [JSONRenderer, _AnyMediaRenderer]

    @extend_schema(
        operation_id="generations_output",
        tags=["generations"],
        summary="A simulated generation's output file",
        description=(
            "The output file of a job run by the simulated backend (the job's `result.url`): a "
            "small placeholder of its type (PNG image, WAV audio, MP4 video, GLB 3D model). "
            "Only the job's organization may fetch it."
        ),
        parameters=[
            OpenApiParameter(
                "id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's id."
            ),
            OpenApiParameter(
                "filename",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The file's name, as in the job's `result.url`.",
            ),
        ],
        responses={
            **{
                (200, content_type): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")
                for _, content_type in KINDS.values()
            },
            **problem_responses(404, *AUTH_ERRORS),
        },
    )
    @tenant_scoped
    def get(self, request, id, filename):
        job = selectors.job_get(organization=request.organization, job_id=id)
        result = job.result if isinstance(job.result, dict) else {}
        kind = str(result.get("type") or "image")
        if (
            job.status != JobStatus.SUCCEEDED
            or result.get("url") != output_url(str(job.pk), kind)
            or not result["url"].endswith(f"/{filename}")
        ):
            raise NotFound("This generation has no such output file.")
        data, content_type = placeholder(kind, result.get("seed"))
        response = HttpResponse(data, content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        response["Cache-Control"] = "private, max-age=3600"
        return response
