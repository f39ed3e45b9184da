"""Cancel: a queued job stops before it starts, and its hold is given back."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from credits.services import hold_release
from generations.models import Job, JobStatus
from generations.services.events import job_event_add


@transaction.atomic(durable=True)
def generation_cancel(
    *,
    job: Job,
    actor: User | None = None,
    audit_by: str | None = None,
    now: datetime | None = None,
) -> Job:
    """Cancel a queued job, releasing its hold, in one transaction with its status log row (and
    its audit row when `audit_by` names who cancelled it, e.g. "admin"). Cancelling a cancelled
    job changes nothing."""
    now = now or timezone.now()
    job = Job.objects.select_for_update(of=("self",)).get(pk=job.pk)
    if job.status == JobStatus.CANCELLED:
        return job
    if job.status != JobStatus.QUEUED:
        raise ValidationError(
            f"Only queued jobs can be cancelled; this one is {job.status}.",
            errors={"status": [f"Job is {job.status}."]},
        )
    job.status = JobStatus.CANCELLED
    job.finished_at = now
    job.credits_charged = Decimal(0)
    job.save(update_fields=["status", "finished_at", "credits_charged"])
    if job.hold_id:
        hold_release(hold=job.hold, reason="cancelled before it started", actor=actor, now=now)
    job_event_add(job, JobStatus.CANCELLED, at=now, message="cancelled")
    if audit_by is not None:
        audit_record(
            action="generation.cancelled",
            organization=job.organization,
            actor=actor,
            target=job,
            data={"released": str(job.credits_held), "by": audit_by},
        )
    return job
