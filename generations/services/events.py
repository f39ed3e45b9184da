"""The status log of a job: one `JobEvent` row per transition, written in the transition's own
transaction by every verb of the lifecycle."""

from __future__ import annotations

from datetime import datetime

from generations.models import Job, JobEvent


def job_event_add(
    job: Job, status: str, *, at: datetime, message: str = "", worker: str = ""
) -> JobEvent:
    return JobEvent.objects.create(
        job=job, status=status, at=at, node=job.node, worker=worker[:255], message=message[:1000]
    )
