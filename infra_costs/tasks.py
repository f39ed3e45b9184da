"""Beat tasks of infra_costs: thin wrappers over the services.

`refresh_cost_aggregates` (CELERY_BEAT_SCHEDULE "infra-costs-refresh-aggregates", every
COST_AGGREGATES_REFRESH_S) recomputes the unit-cost report's per-hour aggregates of the hours
that live runs and recorded uptime marked dirty since, so reports keep reading stored hours. A
late, doubled or skipped run is harmless: reports recompute dirty hours themselves. It also makes
the GPU runs' month partitions of this month and the next ones (`infra_costs.partitions`), so
live runs land in month partitions, not in the default one.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone

from infra_costs import partitions, services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def refresh_cost_aggregates() -> int:
    try:  # a month not made now is made at the next run; the refresh must not wait for it
        partitions.gpu_run_partitions_ahead(now=timezone.now())
    except DatabaseError:
        logger.warning("Could not make the GPU runs' month partitions ahead", exc_info=True)
    return services.cost_aggregates_refresh()
