"""Celery tasks of the generations app: thin wrappers over generations.services."""

from celery import shared_task

from config import logs
from generations import services


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    # Bounded by the longest model's max_runtime_s plus margin; the backend enforces each
    # model's own limit, these are the last resort.
    soft_time_limit=3600,
    time_limit=3660,
    ignore_result=True,
)
def run_generation(job_id: str) -> str:
    from celery import current_task

    logs.task_context_bind(job_id=job_id)  # on this task's log lines (config/logs.py)
    worker = getattr(current_task.request, "hostname", "") or ""
    return services.generation_run(job_id=job_id, worker=worker)


@shared_task(acks_late=True, ignore_result=True)
def reap_jobs() -> dict:
    return services.jobs_reap()
