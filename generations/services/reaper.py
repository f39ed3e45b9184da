"""The reaper (periodic, idempotent): nothing accepted is ever lost, and nothing is published
twice for nothing.

A queued job is published again only when its message is really gone: the broker's own state
(`generations.broker.broker_scan`: the pool's Redis lists and the unacknowledged messages) is
read, and a job whose message is still waiting — however long the queue — is left alone. At
most GENERATIONS_REAPER_REPUBLISH_MAX per run, highest priority first, then the longest
waiting.

It looks at jobs published more than GENERATIONS_REQUEUE_AFTER_S ago — and, when the broker
lost its state (its Redis restarted: `INFO server` uptime; or another server took over: a new
run_id this process did not see at its previous run), at every job published before that, at
the first run after it (docs/reliability.md, "Broker restarts")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from generations.broker import BrokerScan, broker_scan, unacked_forget
from generations.models import Job, JobStatus
from generations.services.execution import job_worker_lost
from generations.services.spool import results_drain_safe
from generations.services.submission import enqueue

logger = logging.getLogger(__name__)


def jobs_reap(*, now: datetime | None = None) -> dict[str, int]:
    """Nothing lost: publish again the queued jobs whose message is gone from the broker
    (accepted while the broker was down, lost with Redis, or taken by a worker that died
    before it started them) — `requeued`, out of `checked` jobs published more than
    GENERATIONS_REQUEUE_AFTER_S ago (or never; or before the broker lost its state —
    `broker_restarted` 1) of which `present` still had their message —
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


def _queued_unpublished(*, published_before: datetime, grace: datetime):
    """Queued jobs whose message may be gone: published before `published_before`, or never
    (their publish failed) and accepted before `grace`."""
    return (
        Job.objects.filter(status=JobStatus.QUEUED)
        .filter(
            Q(published_at__lt=published_before)
            | Q(published_at__isnull=True, enqueued_at__lt=grace)
            | Q(published_at__isnull=True, enqueued_at__isnull=True, created_at__lt=grace)
        )
        # Fleet-managed pools' waiting jobs are dispatched by the fleet tick when a node is
        # free; republishing them here would reset the wait the autoscaler measures.
        .exclude(model__pool__autoscale__enabled=True)
    )


def _candidates(*, published_before: datetime, grace: datetime) -> list[tuple]:
    return list(
        _queued_unpublished(published_before=published_before, grace=grace)
        .order_by("priority", "enqueued_at", "created_at")
        .values_list("pk", "priority", "model__pool__slug", "published_at", "enqueued_at")[
            : settings.GENERATIONS_REAPER_CHECK_MAX
        ]
    )


@dataclass
class _Seen:
    run_id: str
    seen_at: datetime  # the last time this process saw that server
    # When this process saw that server replace another that had been up since before it
    # last saw the other (a failover: the new server's start says nothing about the loss).
    replaced_at: datetime | None = None


# Per broker (URL): the Redis server this process's reaper saw last. Process memory on purpose:
# Redis itself forgets it on the restart it should reveal, and a restart needs no memory at all
# (the uptime tells it); this only adds the failover to another server (a new run_id with a long
# uptime), seen from the second reaper run of a process on.
_seen: dict[str, _Seen] = {}


def _broker_lost_state_before(scan: BrokerScan) -> tuple[datetime | None, str]:
    """The moment before which every message the broker held may be gone (None: no sign of
    it) and why: the server's start (`INFO server` uptime: without persistence a restart
    empties it), or — when this process saw another run_id before and the new server was
    already up then (a failover) — the moment it saw the change (the loss was at an unknown
    moment before)."""
    identity = scan.identity
    if identity is None:
        return None, ""
    # Both on this host's clock (as `published_at`), whatever `now` the caller passed.
    read_at = datetime.fromtimestamp(identity.read_at_ts, tz=UTC)
    started_at = datetime.fromtimestamp(identity.started_at_ts, tz=UTC)
    seen = _seen.get(scan.broker)
    if seen is not None and seen.run_id == identity.run_id:
        replaced_at = seen.replaced_at
    elif seen is not None and started_at < seen.seen_at:
        replaced_at = read_at
    else:
        replaced_at = None  # first look, or a restart since the last one: the start tells it
    _seen[scan.broker] = _Seen(run_id=identity.run_id, seen_at=read_at, replaced_at=replaced_at)
    if replaced_at is not None and replaced_at > started_at:
        return replaced_at, f"another Redis serves the broker (run_id {identity.run_id[:8]})"
    return started_at, (
        f"the broker's Redis restarted {identity.uptime_s} s ago (run_id {identity.run_id[:8]})"
    )


def _scan(**kwargs) -> BrokerScan | None:
    try:
        return broker_scan(**kwargs)
    except Exception:  # the broker is away: nothing could be published anyway
        logger.warning("Reaper: the broker can't be read; republishing later", exc_info=True)
        return None


def _republish_lost(*, now: datetime) -> dict[str, int]:
    counts = {"requeued": 0, "checked": 0, "present": 0, "broker_restarted": 0}
    requeue_after = settings.GENERATIONS_REQUEUE_AFTER_S
    horizon = now - timedelta(seconds=requeue_after)
    # A publish that failed (NULL) is retried at once, past the moment its on-commit publish
    # would have recorded itself.
    grace = now - timedelta(seconds=min(settings.GENERATIONS_REPUBLISH_GRACE_S, requeue_after))
    candidates = _candidates(published_before=horizon, grace=grace)
    # The broker is read even with no long-queued job, as long as some job waits on it: a
    # restart empties it, and the jobs published before are then lost however recent.
    if not candidates and not _queued_unpublished(published_before=now, grace=grace).exists():
        return counts
    scan_args = {
        "now_ts": now.timestamp(),
        "stale_after_s": requeue_after,
        "limit": settings.GENERATIONS_REAPER_SCAN_MAX,
    }
    pools = {pool for _, _, pool, _, _ in candidates}
    if (scan := _scan(pools=pools, **scan_args)) is None:
        return counts
    lost_before, why = _broker_lost_state_before(scan)
    if lost_before is not None and min(lost_before, now) > horizon:
        # The broker lost its state after these jobs were published: look at every one
        # published before, now, not GENERATIONS_REQUEUE_AFTER_S later. Still only those whose
        # message the scan does not find are published again.
        candidates = _candidates(published_before=min(lost_before, now), grace=grace)
        counts["broker_restarted"] = 1
        logger.warning(
            "Reaper: %s; checking the %d queued jobs published before it at once",
            why,
            len(candidates),
        )
        wider = {pool for _, _, pool, _, _ in candidates} - pools
        if wider and (scan := _scan(pools=pools | wider, **scan_args)) is None:
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
