"""Dispatch to fleet-managed pools: a job runs only on a hot node with a free slot
(`infra_costs.fleet.node_acquire`), so a job published while every node is busy (or none is
hot yet) stays queued. It is published again here when capacity appears — a job ended on a
node (`execution._node_freed`, after commit) or the fleet tick saw a node turn hot or found
free slots (`operations`). Highest priority first, then longest waiting; a duplicate publish
is harmless (the claim runs a job once)."""

from __future__ import annotations

from django.utils import timezone

from generations.models import Job, JobStatus
from generations.services.submission import enqueue
from infra_costs import fleet


def jobs_dispatch_waiting(*, pool_ids: list[int]) -> int:
    """Publish as many of each pool's waiting jobs as it has free slots. Returns how many."""
    published = 0
    for pool_id, slots in fleet.free_slots(pool_ids=pool_ids).items():
        if slots <= 0:
            continue
        waiting = (
            Job.objects.filter(status=JobStatus.QUEUED, model__pool_id=pool_id)
            .exclude(enqueued_at__gt=timezone.now())  # rate-throttled, not yet due
            .order_by("priority", "enqueued_at", "created_at")
            .values_list("pk", "priority", "model__pool__slug")[:slots]
        )
        for job_id, priority, pool_slug in waiting:
            published += enqueue(job_id=job_id, pool_slug=pool_slug, priority=priority)
    return published
