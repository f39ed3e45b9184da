"""`POST /api/v1/usage-events/`: a batch of metered events, charged to the caller's
organization all or nothing. Thin: the body's shape is checked here, every event by
`metering.services.usage_events_record` (per-item errors, idempotency, the ledger)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from config.api.schema import AUTH_ERRORS, problem_responses
from config.api.serializers import StrictSerializer
from generations.metering.services import MAX_EVENTS, usage_events_record


class UsageEventInSerializer(serializers.Serializer):
    """One event (CloudEvents-like). Documentation only: the service checks each event."""

    id = serializers.CharField(
        max_length=200, help_text="Your idempotency key: unique per event and organization."
    )
    type = serializers.SlugField(help_text="The meter's slug, e.g. `llm-tokens`.")
    time = serializers.DateTimeField(
        help_text="When the usage happened, ISO 8601 with an offset; at most 35 days ago, "
        "not in the future. The meter's price at that time applies."
    )
    quantity = serializers.CharField(
        help_text="How many of the meter's unit: a decimal string or integer above 0 (at most "
        "6 places). Floats are refused (not exact)."
    )
    subject = serializers.CharField(
        required=False, max_length=255, help_text="Who or what it was for (free text)."
    )
    source = serializers.CharField(
        required=False, max_length=255, help_text="What reported it (free text)."
    )
    specversion = serializers.ChoiceField(choices=["1.0"], required=False)
    data = serializers.JSONField(required=False, help_text="Any JSON object, at most 4 KB.")


class UsageEventBatchSerializer(StrictSerializer):
    events = serializers.JSONField(help_text=f"1 to {MAX_EVENTS} events.")


class UsageEventBatchDocSerializer(serializers.Serializer):
    events = UsageEventInSerializer(many=True)


class UsageEventOutSerializer(serializers.Serializer):
    id = serializers.CharField(source="event.event_id")
    type = serializers.CharField(source="event.meter.slug")
    time = serializers.DateTimeField(source="event.time")
    quantity = serializers.DecimalField(source="event.quantity", max_digits=24, decimal_places=6)
    credits = serializers.DecimalField(
        source="event.credits",
        max_digits=18,
        decimal_places=3,
        help_text="Charged: quantity × the meter's price, rounded once to 3 places, half up.",
    )
    replayed = serializers.BooleanField(
        help_text="Already recorded earlier (or earlier in this batch): not charged again."
    )


class UsageEventResultSerializer(serializers.Serializer):
    events = UsageEventOutSerializer(many=True)


EXAMPLE = {
    "events": [
        {
            "id": "evt-2026-01-05-0001",
            "type": "llm-tokens",
            "time": "2026-01-05T10:00:00Z",
            "quantity": "1250",
            "subject": "user-42",
        }
    ]
}


class UsageEventsView(APIView):
    @extend_schema(
        operation_id="usage_events_create",
        tags=["usage"],
        summary="Record metered usage outside generation jobs",
        description=(
            f"A batch of 1 to {MAX_EVENTS} events (CloudEvents-like: `id`, `type` = a meter's "
            "slug, `time`, `quantity`, optional `subject`, `source`, `data`), each charged to "
            "the organization's credits once: quantity × the meter's price at `time`, rounded "
            "to 3 places (half up). All or nothing: one bad event refuses the batch (400, "
            "`errors` names each, e.g. `events.3.quantity`), insufficient credits refuse it "
            "(402), and nothing is written. An `id` already recorded with the same content is "
            "a replay (`replayed: true`, no second charge); with other content, 409. Charges "
            "appear in the ledger (a hold captured at once, key `usage:<id>`) and in "
            "`GET /api/v1/usage/` (group_by=model: `meter:<slug>`)."
        ),
        request=UsageEventBatchDocSerializer,
        responses={
            200: OpenApiResponse(UsageEventResultSerializer, description="Every event, in order."),
            **problem_responses(400, 402, 409, 413, *AUTH_ERRORS),
        },
        examples=[OpenApiExample("batch", value=EXAMPLE, request_only=True)],
    )
    def post(self, request):
        body = UsageEventBatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = request.user if request.user is not None and request.user.is_authenticated else None
        results = usage_events_record(
            organization=request.organization,
            events=body.validated_data["events"],
            api_key=request_api_key(request),
            user=user,
        )
        return Response(UsageEventResultSerializer({"events": results}).data)
