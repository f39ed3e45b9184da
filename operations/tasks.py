"""Beat and notification tasks of operations: thin wrappers over the services.

`evaluate_alerts` runs every minute (CELERY_BEAT_SCHEDULE "operations-evaluate-alerts"); it is
safe to run twice at once (the evaluation locks the rules) and a late run simply measures later.
`notify_alerts` is queued after an evaluation commits, with the ids of the alerts to email about;
a redelivery sends nothing twice.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from operations.alerts import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def evaluate_alerts() -> dict[str, int]:
    """Measure the alert rules now: open, escalate, de-escalate and resolve alerts."""
    summary = services.alerts_evaluate(now=timezone.now())
    counts = summary.counts()
    if summary.opened or summary.escalated or summary.resolved:
        logger.info("alerts: %s", counts)
    return counts


@shared_task(acks_late=True, ignore_result=True)
def notify_alerts(alert_ids: list[int]) -> int:
    """Email staff about these alerts (opened or escalated), each once."""
    return services.alerts_notify(alert_ids=alert_ids)


@shared_task(acks_late=True, ignore_result=True)
def fleet_tick() -> dict:
    """The fleet tick (every FLEET_TICK_S, CELERY_BEAT_SCHEDULE "operations-fleet-tick"):
    advance node operations, one autoscaling decision per managed pool, dispatch waiting jobs.
    A late or doubled run is harmless (see operations.fleet)."""
    from operations.fleet import fleet_tick as tick

    return tick(now=timezone.now()).as_dict()
