"""The reaper (periodic, idempotent): nothing accepted is ever lost."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generations.models import Job, JobStatus
from generations.services.execution import job_fail, run_external_id
from generations.services.submission import enqueue
from infra_costs import services as infra_costs_services
from infra_costs.models import RunStatus


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Nothing lost: publish again jobs queued for longer than GENERATIONS_REQUEUE_AFTER_S
    (accepted while the broker was down, or lost with a dead worker's prefetch), and fail and
    release running jobs whose worker is gone (lease lapsed). Periodic task; idempotent."""
    now = now or timezone.now()
    horizon = now - timedelta(seconds=settings.GENERATIONS_REQUEUE_AFTER_S)
    stale_queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=horizon)
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
    lost = 0
    lost_ids = Job.objects.filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    for job_id in list(lost_ids.values_list("pk", flat=True)[:1000]):
        with transaction.atomic(durable=True):
            job = Job.objects.select_for_update(of=("self",)).select_related("model").get(pk=job_id)
            if job.status != JobStatus.RUNNING or job.lease_expires_at >= now:
                continue
            job_fail(
                job,
                code="worker_lost",
                message="The GPU worker running this job was lost.",
                customer_fault=False,
                now=now,
            )
            infra_costs_services.gpu_run_finish(
                external_id=run_external_id(job, job.attempts),
                status=RunStatus.FAILED,
                finished_at=now,
            )
            lost += 1
    return {"requeued": requeued, "failed_lost": lost}
