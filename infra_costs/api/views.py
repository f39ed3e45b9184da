"""Infra-costs endpoints of API v1, staff only: the unit-cost report, and bulk ingestion of
pools, node uptime and jobs for providers' exporters (same validation and idempotency as the
CSV commands; a refused batch writes nothing). API keys are never staff."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.permissions import IsStaff
from config.api.schema import AUTH_ERRORS, problem_responses
from infra_costs import services
from infra_costs.allocation import unit_cost_report
from infra_costs.api.serializers import (
    ImportQuerySerializer,
    ImportResultSerializer,
    JobRowSerializer,
    PoolRowSerializer,
    UnitCostsQuerySerializer,
    UnitCostsSerializer,
    UptimeRowSerializer,
)

TAGS = ["costs"]


class UnitCostsView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        operation_id="costs_unit_costs_retrieve",
        tags=TAGS,
        summary="Unit-cost report (staff)",
        description=(
            "Infrastructure cost of [`start`, `end`) (local dates of `timezone`) allocated to "
            "models by spec §3: per pool uptime, busy and idle hours and cost; per model "
            "generations, GPU hours, active, allocated and fully loaded cost and cost per "
            "generation; totals and warnings. The same JSON as `manage.py unit_costs "
            "--format json`. Decimals are strings with 6 decimal places."
        ),
        parameters=[UnitCostsQuerySerializer],
        responses={200: UnitCostsSerializer, **problem_responses(400, *AUTH_ERRORS)},
    )
    def get(self, request):
        query = UnitCostsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        return Response(
            unit_cost_report(
                data["start"],
                data["end"],
                window=data["window"],
                idle_policy=data["idle_policy"],
                timezone=data["timezone"],
            )
        )


class _ImportView(APIView):
    permission_classes = [IsStaff]
    importer = staticmethod(services.pools_import)

    def post(self, request):
        query = ImportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = self.importer(rows=request.data, skip_invalid=query.validated_data["skip_invalid"])
        return Response(result.as_dict())


def _import_schema(kind: str, row, example: dict) -> dict:
    return {
        "operation_id": f"costs_{kind}_import",
        "tags": TAGS,
        "summary": f"Import {kind} (staff)",
        "description": (
            f"A JSON list of {kind} rows (the columns of the CSV import). Each row is checked; "
            "any bad row refuses the whole batch (`validation_error`, `errors` keyed by row "
            "index) and nothing is written, unless `?skip_invalid=true`. Rows already present "
            "with the same data are skipped, so a batch can be sent again safely."
        ),
        "parameters": [ImportQuerySerializer],
        "request": row(many=True),
        "responses": {
            200: ImportResultSerializer,
            **problem_responses(400, 413, *AUTH_ERRORS),
        },
        "examples": [OpenApiExample(kind, value=[example], request_only=True)],
    }


class PoolsImportView(_ImportView):
    importer = staticmethod(services.pools_import)

    @extend_schema(
        **_import_schema(
            "pools",
            PoolRowSerializer,
            {
                "pool": "a100",
                "gpu_type": "A100",
                "hourly_rate_usd": "3.60",
                "effective_from": "2026-01-01T00:00:00+00:00",
            },
        )
    )
    def post(self, request):
        return super().post(request)


class UptimeImportView(_ImportView):
    importer = staticmethod(services.uptime_import)

    @extend_schema(
        **_import_schema(
            "uptime",
            UptimeRowSerializer,
            {
                "node": "a100-01",
                "pool": "a100",
                "started_at": "2026-01-05T00:00:00+00:00",
                "ended_at": "2026-01-05T12:00:00+00:00",
            },
        )
    )
    def post(self, request):
        return super().post(request)


class JobsImportView(_ImportView):
    importer = staticmethod(services.jobs_import)

    @extend_schema(
        **_import_schema(
            "jobs",
            JobRowSerializer,
            {
                "external_id": "job-1",
                "model": "sdxl",
                "node": "a100-01",
                "started_at": "2026-01-05T01:00:00+00:00",
                "finished_at": "2026-01-05T01:10:00+00:00",
                "status": "succeeded",
            },
        )
    )
    def post(self, request):
        return super().post(request)
