"""Reads of outbound webhooks, always scoped to the caller's organization (another
organization's endpoint or delivery is a NotFound)."""

from __future__ import annotations

from django.db.models import Count, Prefetch, Q, QuerySet

from accounts.models import Organization
from accounts.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from config.errors import NotFound


def webhook_endpoint_list(*, organization: Organization) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization=organization).annotate(
        pending_count=Count("deliveries", filter=Q(deliveries__status="pending"))
    )


def webhook_endpoint_get(*, organization: Organization, endpoint_id) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(organization=organization, pk=int(endpoint_id))
    except (WebhookEndpoint.DoesNotExist, TypeError, ValueError) as exc:
        raise NotFound("No such webhook endpoint.") from exc


def webhook_delivery_list(
    *, organization: Organization, endpoint: WebhookEndpoint | None = None
) -> QuerySet[WebhookDelivery]:
    deliveries = WebhookDelivery.objects.filter(endpoint__organization=organization)
    if endpoint is not None:
        deliveries = deliveries.filter(endpoint=endpoint)
    return deliveries.select_related("event", "endpoint").prefetch_related(
        Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number"))
    )


def webhook_delivery_get(*, organization: Organization, delivery_id) -> WebhookDelivery:
    try:
        return webhook_delivery_list(organization=organization).get(pk=int(delivery_id))
    except (WebhookDelivery.DoesNotExist, TypeError, ValueError) as exc:
        raise NotFound("No such delivery.") from exc
