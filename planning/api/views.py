"""Scenario planner endpoints of API v1 (staff only).

Who may call them: staff users, through their browser session (`SessionAuthentication`, CSRF
on POST) — the same rule as the other cost endpoints (`config.api.permissions.IsStaff`). API
keys belong to organizations and are never staff: a key gets 403 `permission_denied`, a
logged-in non-staff user 403, an anonymous caller 401; all as problem+json, never data.

- GET/POST `/api/v1/planning/scenarios/` — saved scenarios (newest first, cursor-paginated) /
  save one (`{"name", "inputs"}` → 201; bad inputs → 400 `validation_error`, nothing saved);
- GET `/api/v1/planning/scenarios/{id}/` — one, with its outputs evaluated now;
- POST `/api/v1/planning/scenarios/evaluate/` — inputs → outputs, nothing saved.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api.permissions import IsStaff
from config.api.schema import AUTH_ERRORS, problem_responses
from planning.api.serializers import (
    ScenarioCreateSerializer,
    ScenarioDetailSerializer,
    ScenarioInputsSerializer,
    ScenarioOutputsSerializer,
    ScenarioSerializer,
)
from planning.scenarios import selectors, services

TAGS = ["planning"]

INPUTS_EXAMPLE = {
    "mau": 10000,
    "generations_per_user": "40",
    "model_mix": {"image-fast": "80", "video-hd": "20"},
    "cache_hit_pct": "25",
    "conversion_pct": "5",
    "plan_mix": {"starter": "60", "creator": "30", "studio": "10"},
    "baseline": [
        {"name": "Database", "monthly_usd": "250"},
        {"name": "Storage", "monthly_usd": "120"},
    ],
    "cost_overrides": {"video-hd": "0.05"},
}


def _detail(scenario) -> dict:
    data = ScenarioSerializer(scenario).data
    data["outputs"] = selectors.scenario_evaluate(selectors.inputs_parse(scenario.inputs))
    return data


class ScenarioListCreateView(ListAPIView):
    permission_classes = [IsStaff]
    serializer_class = ScenarioSerializer

    def get_queryset(self):
        return selectors.scenario_list()

    @extend_schema(
        operation_id="planning_scenarios_list",
        tags=TAGS,
        summary="Saved scenarios (staff)",
        responses={200: ScenarioSerializer(many=True), **problem_responses(400, *AUTH_ERRORS)},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="planning_scenarios_create",
        tags=TAGS,
        summary="Save a scenario (staff)",
        description=(
            "Validates the inputs (the rules of `POST …/evaluate/`) and saves them under a "
            "name. A bad input is a 400 `validation_error` with messages per field; nothing is "
            "saved."
        ),
        request=ScenarioCreateSerializer,
        responses={201: ScenarioDetailSerializer, **problem_responses(400, 413, *AUTH_ERRORS)},
        examples=[
            OpenApiExample(
                "scenario", value={"name": "Launch", "inputs": INPUTS_EXAMPLE}, request_only=True
            )
        ],
    )
    def post(self, request):
        body = ScenarioCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        scenario = services.scenario_create(
            name=body.validated_data["name"],
            inputs=body.validated_data["inputs"],
            actor=request.user,
        )
        return Response(_detail(scenario), status=status.HTTP_201_CREATED)


class ScenarioDetailView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        operation_id="planning_scenarios_retrieve",
        tags=TAGS,
        summary="A saved scenario with its outputs (staff)",
        description="The outputs are computed now: today's plan prices, costs measured over "
        "the scenario's period.",
        responses={200: ScenarioDetailSerializer, **problem_responses(404, *AUTH_ERRORS)},
    )
    def get(self, request, pk: int):
        return Response(_detail(selectors.scenario_get(scenario_id=pk)))


class ScenarioEvaluateView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        operation_id="planning_scenarios_evaluate",
        tags=TAGS,
        summary="Evaluate scenario inputs without saving (staff)",
        description=(
            "Monthly GPU cost from the measured cost per generation per model (the unit-cost "
            "report over `costs_start`–`costs_end`, default the last 30 days; cached "
            "generations cost nothing), revenue by plan, gross margin, break-even MAU and paid "
            "users, and a sensitivity table (−20 %/+20 % conversion, generations per user, GPU "
            "price). A model of the mix with no measured cost and no override is counted at "
            "no cost, with a `no_measured_cost` warning."
        ),
        request=ScenarioInputsSerializer,
        responses={200: ScenarioOutputsSerializer, **problem_responses(400, 413, *AUTH_ERRORS)},
        examples=[OpenApiExample("inputs", value=INPUTS_EXAMPLE, request_only=True)],
    )
    def post(self, request):
        inputs = selectors.inputs_parse(request.data)
        return Response(selectors.scenario_evaluate(inputs))
