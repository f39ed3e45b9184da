"""Batching (optional per model): a node takes up to `backend_config["batch_size"]` queued
jobs of the same model with compatible params in one backend call.

*Compatible* = the same params apart from `prompt` and `seed` (one jsonb comparison in SQL).
The job a worker claimed leads: its node slot is the batch's; the mates — the oldest queued
compatible jobs, highest priority first, skipping rows other workers hold — are claimed onto the
same node in one transaction (each its own attempt, event and GPU run, its hold extended as in a
single claim; a mate whose hold is gone is left queued and fails on its own claim).

After the call each job is finished on its own, exactly as a single run (capture or release
in its terminal transaction). **GPU seconds**: the batch's wall time [s, e) is split evenly — job
k of n ran [s + k·(e−s)/n, s + (k+1)·(e−s)/n) — so the runs tile the batch without overlap:
the node's busy time is the batch's time and each job weighs an equal share, and the unit-cost
allocation stays exact.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from credits.services import hold_extend
from generations.backends import BackendError, RunRequest, RunResult
from generations.models import AIModel, Job, JobStatus
from generations.services.submission import job_watermark
from infra_costs import fleet

logger = logging.getLogger(__name__)

BATCH_VARIES = ("prompt", "seed")  # what may differ within a batch
MAX_BATCH = 16


def batch_size(model: AIModel) -> int:
    """The model's batch size (1: no batching)."""
    try:
        size = int((model.backend_config or {}).get("batch_size", 1))
    except (TypeError, ValueError):
        return 1
    return max(1, min(MAX_BATCH, size))


def _rest(params) -> dict:
    return {k: v for k, v in (params or {}).items() if k not in BATCH_VARIES}


def mates_claim(lead: Job, *, limit: int, worker: str) -> list[Job]:
    """Claim up to `limit` queued jobs compatible with `lead` (running on `lead.node`) onto
    its node. In the caller's durable transaction."""
    from generations.services.execution import attempt_start

    now = timezone.now()
    candidates = list(
        Job.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(status=JobStatus.QUEUED, model_id=lead.model_id)
        .exclude(pk=lead.pk)
        .exclude(enqueued_at__gt=now)  # rate-throttled (fair-use plans), not yet due
        .extra(
            where=["(params - %s - %s) = %s::jsonb"],
            params=[*BATCH_VARIES, json.dumps(_rest(lead.params))],
        )
        .select_related("hold", "model__pool")
        .order_by("priority", "enqueued_at", "created_at")[:limit]
    )
    mates = []
    hold_until = now + timedelta(seconds=settings.CREDITS_HOLD_TIMEOUT_S)
    for job in candidates:
        if job.hold_id and not hold_extend(hold=job.hold, until=hold_until):
            continue
        attempt_start(
            job,
            node=lead.node,
            now=now,
            worker=worker,
            message=f"started on {lead.node} in a batch led by job {lead.pk}",
        )
        mates.append(job)
    if mates:
        fleet.node_join(node_name=lead.node, jobs=len(mates))
    return mates


def batch_run(lead: Job, request: RunRequest, mates: list[Job], *, backend, worker: str) -> str:
    """Run the batch in one backend call, then finish every job on its own. Returns the
    lead's outcome."""
    from generations.services.execution import _finish_recorded, _Heartbeat

    jobs = [lead, *mates]
    requests = [request] + [
        RunRequest(
            job_id=str(job.pk),
            model_slug=job.model.slug,
            pool_slug=job.model.pool.slug,
            params=job.params,
            backend_config=job.model.backend_config or {},
            timeout_s=job.model.max_runtime_s,
            watermark=job_watermark(job),
        )
        for job in mates
    ]
    also = tuple((job.pk, job.attempts) for job in mates)
    started = timezone.now()
    with _Heartbeat(lead.pk, lead.attempts, also=also):
        try:
            results = list(backend.run_batch(requests, node=lead.node))
        except BackendError as exc:
            results = [exc] * len(jobs)
        except Exception as exc:  # a bug or a time limit: not the customers' fault
            logger.exception("Backend crashed on a batch led by job %s", lead.pk)
            err = BackendError(f"Internal error: {exc.__class__.__name__}", code="internal_error")
            results = [err] * len(jobs)
    finished = timezone.now()
    share = (finished - started) / len(jobs)
    outcomes = []
    for k, (job, result) in enumerate(zip(jobs, results, strict=True)):
        s, e = started + share * k, started + share * (k + 1)
        if isinstance(result, BackendError):
            result.started_at, result.finished_at = s, e
            outcome, error = None, result
        else:
            outcome = RunResult(
                output=result.output,
                node=lead.node,
                started_at=s,
                finished_at=e,
                meta=result.meta,
                units=result.units,
            )
            error = None
        # Each finish survives connection loss; once one is spooled (the database is away)
        # the rest of the batch is spooled at once instead of retrying each.
        spooling = "spooled" in outcomes
        outcomes.append(
            _finish_recorded(
                job.pk,
                attempt=job.attempts,
                outcome=outcome,
                error=error,
                worker=worker,
                tries=0 if spooling else None,
            )
        )
    return outcomes[0]
