"""The reaper (periodic, idempotent): nothing accepted is ever lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generations.models import Job, JobStatus
from generations.services.execution import job_worker_lost
from generations.services.submission import enqueue


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Nothing lost: publish again jobs queued for longer than GENERATIONS_REQUEUE_AFTER_S
    (accepted while the broker was down, or lost with a dead worker's prefetch), and give
    running jobs whose worker is gone (lease lapsed) another attempt — back to `queued` with
    the same hold, published again to their pool's queue with their priority on commit — or,
    after GENERATIONS_MAX_ATTEMPTS, fail them and release their hold. Periodic task;
    idempotent."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.GENERATIONS_REQUEUE_AFTER_S)
    stale_queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=horizon)
        # Fleet-managed pools' waiting jobs are dispatched by the fleet tick when a node is
        # free; republishing them here would reset the wait the autoscaler measures.
        .exclude(model__pool__autoscale__enabled=True)
        .select_related("model__pool")
        .order_by("priority", "created_at")[:1000]
    )
    requeued = 0
    for job in stale_queued:
        # Conditional: a concurrent reaper or a worker that just started it wins.
        if Job.objects.filter(
            pk=job.pk, status=JobStatus.QUEUED, enqueued_at=job.enqueued_at
        ).update(enqueued_at=now):
            requeued += enqueue(job_id=job.pk, pool_slug=job.model.pool.slug, priority=job.priority)
    retried = failed = 0
    lost_ids = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job_id in list(lost_ids.values_list("pk", flat=True)[:1000]):
        with transaction.atomic(durable=True):
            job = (
                Job.objects.select_for_update(of=("self",))
                .select_related("model__pool")
                .get(pk=job_id)
            )
            if job.status != JobStatus.RUNNING or job.lease_expires_at >= now:
                continue  # its worker renewed the lease, or someone else decided meanwhile
            if job_worker_lost(job, now=now):
                transaction.on_commit(
                    partial(
                        enqueue,
                        job_id=job.pk,
                        pool_slug=job.model.pool.slug,
                        priority=job.priority,
                    )
                )
                retried += 1
            else:
                failed += 1
    return {"requeued": requeued, "retried_lost": retried, "failed_lost": failed}
