"""Beat tasks of infra_costs: thin wrappers over the services.

`refresh_cost_aggregates` (CELERY_BEAT_SCHEDULE "infra-costs-refresh-aggregates", every
COST_AGGREGATES_REFRESH_S) recomputes the unit-cost report's per-hour aggregates of the hours
that live runs and recorded uptime marked dirty since, so reports keep reading stored hours. A
late, doubled or skipped run is harmless: reports recompute dirty hours themselves. It also makes
the GPU runs' month partitions of this month and the next ones (`infra_costs.partitions`), so
live runs land in month partitions, not in the default one.
"""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from infra_costs import partitions, services


@shared_task(acks_late=True, ignore_result=True)
def refresh_cost_aggregates() -> int:
    partitions.gpu_run_partitions_ahead(now=timezone.now())
    return services.cost_aggregates_refresh()
