"""Exports for analysts (staff only): `GET /api/v1/exports/<dataset>.<csv|parquet>` (or
`?format=`), with a staff session or a staff API token (`Bearer gpus_…`). The rows are
`operations.exports.datasets`'; a bad period is a 400 problem before anything streams."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.permissions import IsStaff
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import NotFound
from config.exports import ExportQuery, datasets
from operations.api.serializers import ExportQuerySerializer
from operations.exports import formats

TAGS = ["exports"]


def export_response(*, slug: str, fmt: str, query: ExportQuery) -> StreamingHttpResponse:
    """The streamed file of one dataset (shared by the API and the staff page)."""
    dataset = datasets()[slug]
    rows = dataset.rows(query)  # checks the period and computes before streaming starts
    name = f"{slug}_{query.start.isoformat()}_{query.end.isoformat()}.{fmt}"
    if fmt == "csv":
        body = formats.csv_lines(dataset, rows)
    else:
        body = formats.file_chunks(formats.parquet_file(dataset, rows))
    response = StreamingHttpResponse(body, content_type=formats.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


class _StaffExportView(APIView):
    permission_classes = [IsStaff]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        # The file format is the path's suffix or `?format=`, never content negotiation;
        # errors are JSON problems.
        return (JSONRenderer(), JSONRenderer.media_type)


class ExportIndexView(_StaffExportView):
    @extend_schema(
        operation_id="exports_list",
        tags=TAGS,
        summary="Datasets that can be exported (staff)",
        responses={200: OpenApiTypes.OBJECT, **problem_responses(*AUTH_ERRORS)},
    )
    def get(self, request):
        return Response(
            {
                "datasets": [
                    {
                        "dataset": d.slug,
                        "title": d.title,
                        "description": d.description,
                        "columns": d.names,
                        "windowed": d.windowed,
                    }
                    for d in datasets().values()
                ],
                "formats": list(formats.FORMATS),
            }
        )


def _export_schema(*, operation_id: str, suffix: bool) -> dict:
    parameters = [
        OpenApiParameter(
            "dataset", str, OpenApiParameter.PATH, enum=list(datasets()), description="Dataset."
        ),
        ExportQuerySerializer,
    ]
    if suffix:
        parameters.insert(
            1,
            OpenApiParameter(
                "fmt", str, OpenApiParameter.PATH, enum=list(formats.FORMATS), description="Format."
            ),
        )
    return {
        "operation_id": operation_id,
        "tags": TAGS,
        "summary": "Export a dataset as CSV or Parquet (staff)",
        "description": (
            "One dataset over [`start`, `end`) (local dates of `timezone`): "
            + "; ".join(f"`{d.slug}`: {d.description}" for d in datasets().values())
            + " Authenticate with a staff session or a staff API token (`Bearer gpus_…`). "
            "CSV decimals are written in full; Parquet columns are typed (decimal128, int64, "
            "date32, timestamp UTC)."
        ),
        "parameters": parameters,
        "responses": {
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV file."),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(
                OpenApiTypes.BINARY, description="Parquet file."
            ),
            **problem_responses(400, 404, *AUTH_ERRORS),
        },
    }


class ExportView(_StaffExportView):
    """`/api/v1/exports/<dataset>.<csv|parquet>`."""

    @extend_schema(**_export_schema(operation_id="exports_file_retrieve", suffix=True))
    def get(self, request, dataset: str, fmt: str | None = None):
        if dataset not in datasets():
            raise NotFound("No such dataset.")
        params = ExportQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        query = ExportQuery(
            start=data["start"], end=data["end"], window=data["window"], timezone=data["timezone"]
        )
        return export_response(slug=dataset, fmt=fmt or data.get("format", "csv"), query=query)


class ExportByQueryView(ExportView):
    """`/api/v1/exports/<dataset>?format=csv|parquet` (CSV by default)."""

    @extend_schema(**_export_schema(operation_id="exports_retrieve", suffix=False))
    def get(self, request, dataset: str, fmt: str | None = None):
        return super().get(request, dataset)
