"""The status log of a job: one `JobEvent` row per transition, written in the transition's own
transaction by every verb of the lifecycle. A terminal success or failure also writes the
`generation.succeeded` / `generation.failed` webhook event to the outbox, in that transaction."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from generations.models import Job, JobEvent, JobStatus

CREDIT_PLACES = Decimal("0.001")
WEBHOOK_EVENTS = {
    JobStatus.SUCCEEDED: EventType.GENERATION_SUCCEEDED,
    JobStatus.FAILED: EventType.GENERATION_FAILED,
}


def _credits(amount) -> str | None:
    return None if amount is None else str(Decimal(amount).quantize(CREDIT_PLACES))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def job_webhook_payload(job: Job) -> dict:
    """The job as the API shows it (`GET /api/v1/generations/{id}/`), less its params."""
    failed = job.status == JobStatus.FAILED
    return {
        "id": str(job.pk),
        "status": job.status,
        "model": job.model.slug,
        "credits_held": _credits(job.credits_held),
        "credits_charged": _credits(job.credits_charged),
        "cached": job.cached,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "result": None if failed else job.result,
        "error": (
            {"code": job.error_code or "failed", "message": job.error or ""} if failed else None
        ),
    }


def job_event_add(
    job: Job, status: str, *, at: datetime, message: str = "", worker: str = ""
) -> JobEvent:
    event = JobEvent.objects.create(
        job=job, status=status, at=at, node=job.node, worker=worker[:255], message=message[:1000]
    )
    webhook_type = WEBHOOK_EVENTS.get(status)
    if webhook_type is not None and job.status == status:
        webhook_event_emit(
            organization=job.organization,
            type=webhook_type,
            payload=job_webhook_payload(job),
            dedupe_key=f"job:{job.pk}:{status}",
        )
    return event
