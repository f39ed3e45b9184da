"""Celery tasks of accounts: outbound webhook deliveries (thin wrappers over
`accounts.webhooks.services`; see its docstring for the delivery guarantees)."""

from __future__ import annotations

import logging

from celery import shared_task

from accounts.webhooks import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def webhook_deliver(delivery_id: int) -> str:
    """Try one delivery if it is due. A redelivered or duplicate task finds it delivered, or
    claimed by another attempt, and does nothing. A failure is tried again at its retry time."""
    outcome = services.webhook_delivery_attempt(delivery_id=delivery_id)
    if outcome == "retry":
        from accounts.webhooks.models import WebhookDelivery

        retry_at = (
            WebhookDelivery.objects.filter(pk=delivery_id)
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        if retry_at is not None:
            webhook_deliver.apply_async((delivery_id,), eta=retry_at)
    return outcome


@shared_task(acks_late=True, ignore_result=True)
def webhook_sweep() -> int:
    """Beat: queue every pending delivery that is due (a lost task, a retry whose task was
    dropped). Duplicates are harmless: a delivery is claimed before it is sent."""
    due = services.webhook_deliveries_due()
    for delivery_id in due:
        webhook_deliver.delay(delivery_id)
    if due:
        logger.info("queued %d due webhook deliveries", len(due))
    return len(due)
