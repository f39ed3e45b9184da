"""The reaper (periodic, idempotent): nothing accepted is ever lost, and nothing is published
twice for nothing.

A queued job is published again only when its message is really gone: the broker's own state
(`generations.broker.broker_scan`: the pool's Redis lists and the unacknowledged messages) is
read, and a job whose message is still waiting — however long the queue — is left alone. At
most GENERATIONS_REAPER_REPUBLISH_MAX per run, highest priority first, then the longest
waiting."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generations.broker import broker_scan, unacked_forget
from generations.models import Job, JobStatus
from generations.services.execution import job_worker_lost
from generations.services.spool import results_drain_safe
from generations.services.submission import enqueue

logger = logging.getLogger(__name__)


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Nothing lost: publish again the queued jobs whose message is gone from the broker
    (accepted while the broker was down, lost with Redis, or taken by a worker that died
    before it started them) — `requeued`, out of `checked` jobs published more than
    GENERATIONS_REQUEUE_AFTER_S ago (or never) of which `present` still had their message —
    and give running jobs whose worker is gone (lease lapsed) another attempt — back to
    `queued` with the same hold, published again to their pool's queue with their priority on
    commit — or, after GENERATIONS_MAX_ATTEMPTS, fail them and release their hold. Periodic
    task; idempotent."""
    now = now or timezone.now()
    # Results a worker here could not record (the database was away) go in before any lease
    # is judged lapsed: a job whose GPU work completed never fails `worker_lost`.
    results_drain_safe()
    republish = _republish_lost(now=now)
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
    return {**republish, "retried_lost": retried, "failed_lost": failed}


def _republish_lost(*, now: datetime) -> dict[str, int]:
    counts = {"requeued": 0, "checked": 0, "present": 0}
    requeue_after = settings.GENERATIONS_REQUEUE_AFTER_S
    horizon = now - timedelta(seconds=requeue_after)
    # A publish that failed (NULL) is retried at once, past the moment its on-commit publish
    # would have recorded itself.
    grace = now - timedelta(seconds=min(settings.GENERATIONS_REPUBLISH_GRACE_S, requeue_after))
    candidates = list(
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(
            Q(published_at__lt=horizon)
            | Q(published_at__isnull=True, enqueued_at__lt=grace)
            | Q(published_at__isnull=True, enqueued_at__isnull=True, created_at__lt=grace)
        )
        # Fleet-managed pools' waiting jobs are dispatched by the fleet tick when a node is
        # free; republishing them here would reset the wait the autoscaler measures.
        .exclude(model__pool__autoscale__enabled=True)
        .order_by("priority", "enqueued_at", "created_at")
        .values_list("pk", "priority", "model__pool__slug", "published_at", "enqueued_at")[
            : settings.GENERATIONS_REAPER_CHECK_MAX
        ]
    )
    if not candidates:
        return counts
    try:
        scan = broker_scan(
            pools={pool for _, _, pool, _, _ in candidates},
            now_ts=now.timestamp(),
            stale_after_s=requeue_after,
            limit=settings.GENERATIONS_REAPER_SCAN_MAX,
        )
    except Exception:  # the broker is away: nothing could be published anyway
        logger.warning("Reaper: the broker can't be read; republishing later", exc_info=True)
        return counts
    for job_id, priority, pool, published_at, enqueued_at in candidates:
        if counts["requeued"] >= settings.GENERATIONS_REAPER_REPUBLISH_MAX:
            break
        counts["checked"] += 1
        if pool not in scan.complete:
            continue  # its queue was too long to read whole: can't tell it is lost
        if str(job_id) in scan.present:
            counts["present"] += 1
            continue
        # Conditional: a concurrent reaper or a worker that just started it wins.
        if not Job.objects.filter(
            pk=job_id, status=JobStatus.QUEUED, published_at=published_at
        ).update(published_at=now):
            continue
        due_in = (enqueued_at - now).total_seconds() if enqueued_at else 0
        if enqueue(
            job_id=job_id,
            pool_slug=pool,
            priority=priority,
            countdown=due_in if due_in > 0 else None,  # a rate-throttled job not yet due
        ):
            counts["requeued"] += 1
            if stale := scan.stale.get(str(job_id)):
                try:  # the dead worker's copy: not put back as a second one in an hour
                    unacked_forget(tags=stale)
                except Exception:
                    logger.warning("Reaper: could not drop %s's stale message", job_id)
    if counts["requeued"] or counts["present"]:
        logger.info(
            "Reaper: %(requeued)d lost messages published again; %(present)d of %(checked)d "
            "long-queued jobs still had theirs",
            counts,
        )
    return counts
