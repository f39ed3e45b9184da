"""Webhook endpoints of API v1 (`/api/v1/webhooks/…`), for the caller's organization only:
another organization's endpoint or delivery is a 404. Writes by a session need an owner or
admin; an API key acts for its organization."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.webhooks import selectors, services
from accounts.webhooks.models import (
    ORGANIZATION_EVENT_TYPES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from config.api.schema import AUTH_ERRORS, problem_responses

TAGS = ["webhooks"]
ENDPOINT_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Endpoint id.")
DELIVERY_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Delivery id.")


def _actor(request):
    user = request.user
    return user if user is not None and user.is_authenticated else None


class WebhookEndpointSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=[str(t) for t in ORGANIZATION_EVENT_TYPES]),
        help_text="The event types sent to this endpoint.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "disabled_reason",
            "failure_streak",
            "created_at",
        ]
        read_only_fields = ["id", "disabled_reason", "failure_streak", "created_at"]


class WebhookEndpointCreateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="https URL that receives the events.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=[str(t) for t in ORGANIZATION_EVENT_TYPES]),
        allow_empty=False,
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, required=False)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=[str(t) for t in ORGANIZATION_EVENT_TYPES]),
        allow_empty=False,
        required=False,
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.SerializerMethodField(
        help_text="The signing secret: shown only in this response."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]

    def get_secret(self, obj) -> str:
        return self.context["secret"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "at", "status_code", "error", "duration_ms", "next_attempt_at"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event = serializers.CharField(source="event.public_id", help_text="The event's stable id.")
    type = serializers.CharField(source="event.type")
    endpoint = serializers.IntegerField(source="endpoint_id")
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "type",
            "endpoint",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "attempt_log",
        ]


class WebhookEndpointListView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_list",
        tags=TAGS,
        summary="The organization's webhook endpoints",
        responses={200: WebhookEndpointSerializer(many=True), **problem_responses(*AUTH_ERRORS)},
    )
    def get(self, request):
        endpoints = selectors.webhook_endpoint_list(organization=request.organization)
        return Response({"results": WebhookEndpointSerializer(endpoints, many=True).data})

    @extend_schema(
        operation_id="webhook_endpoints_create",
        tags=TAGS,
        summary="Add a webhook endpoint",
        description="Returns the endpoint with its signing `secret`, shown only here.",
        request=WebhookEndpointCreateSerializer,
        responses={
            201: WebhookEndpointWithSecretSerializer,
            **problem_responses(400, *AUTH_ERRORS),
        },
    )
    def post(self, request):
        data = WebhookEndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_create(
            organization=request.organization, actor=_actor(request), **data.validated_data
        )
        body = WebhookEndpointWithSecretSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(APIView):
    def _endpoint(self, request, id):
        return selectors.webhook_endpoint_get(organization=request.organization, endpoint_id=id)

    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        tags=TAGS,
        summary="One webhook endpoint",
        parameters=[ENDPOINT_ID],
        responses={200: WebhookEndpointSerializer, **problem_responses(404, *AUTH_ERRORS)},
    )
    def get(self, request, id):
        return Response(WebhookEndpointSerializer(self._endpoint(request, id)).data)

    @extend_schema(
        operation_id="webhook_endpoints_update",
        tags=TAGS,
        summary="Change a webhook endpoint (URL, event types, description, enabled)",
        parameters=[ENDPOINT_ID],
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def patch(self, request, id):
        endpoint = self._endpoint(request, id)
        data = WebhookEndpointUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(
            endpoint=endpoint, actor=_actor(request), **data.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        operation_id="webhook_endpoints_destroy",
        tags=TAGS,
        summary="Delete a webhook endpoint and its delivery log",
        parameters=[ENDPOINT_ID],
        responses={204: None, **problem_responses(404, *AUTH_ERRORS)},
    )
    def delete(self, request, id):
        services.webhook_endpoint_delete(
            endpoint=self._endpoint(request, id), actor=_actor(request)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        tags=TAGS,
        summary="Rotate the signing secret",
        description=(
            "Returns the new `secret`, shown only here. The previous secret stays valid for 24 "
            "hours: meanwhile each event carries a `v1=` signature for each secret."
        ),
        parameters=[ENDPOINT_ID],
        request=None,
        responses={
            200: WebhookEndpointWithSecretSerializer,
            **problem_responses(404, *AUTH_ERRORS),
        },
    )
    def post(self, request, id):
        endpoint = selectors.webhook_endpoint_get(organization=request.organization, endpoint_id=id)
        endpoint, secret = services.webhook_endpoint_rotate_secret(
            endpoint=endpoint, actor=_actor(request)
        )
        return Response(
            WebhookEndpointWithSecretSerializer(endpoint, context={"secret": secret}).data
        )


class WebhookEndpointTestView(APIView):
    @extend_schema(
        operation_id="webhook_endpoints_test",
        tags=TAGS,
        summary="Send a `webhook.test` event to this endpoint",
        parameters=[ENDPOINT_ID],
        request=None,
        responses={202: WebhookDeliverySerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def post(self, request, id):
        endpoint = selectors.webhook_endpoint_get(organization=request.organization, endpoint_id=id)
        delivery = services.webhook_test_send(endpoint=endpoint, actor=_actor(request))
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListView(ListAPIView):
    serializer_class = WebhookDeliverySerializer

    def get_queryset(self):
        endpoint = None
        if "id" in self.kwargs:
            endpoint = selectors.webhook_endpoint_get(
                organization=self.request.organization, endpoint_id=self.kwargs["id"]
            )
        return selectors.webhook_delivery_list(
            organization=self.request.organization, endpoint=endpoint
        )

    @extend_schema(
        operation_id="webhook_endpoints_deliveries",
        tags=TAGS,
        summary="An endpoint's deliveries, newest first, each with its attempts",
        parameters=[ENDPOINT_ID],
        responses={
            200: WebhookDeliverySerializer(many=True),
            **problem_responses(400, 404, *AUTH_ERRORS),
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class WebhookDeliveryResendView(APIView):
    @extend_schema(
        operation_id="webhook_deliveries_resend",
        tags=TAGS,
        summary="Send a delivery's event again (same event id)",
        parameters=[DELIVERY_ID],
        request=None,
        responses={202: WebhookDeliverySerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def post(self, request, id):
        delivery = selectors.webhook_delivery_get(organization=request.organization, delivery_id=id)
        again = services.webhook_delivery_resend(delivery=delivery, actor=_actor(request))
        return Response(WebhookDeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)
