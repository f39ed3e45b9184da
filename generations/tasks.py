"""Celery tasks of the generations app: thin wrappers over generations.services."""

from celery import shared_task

from config import logs
from generations import services
from generations.services.reconnect import on_fresh_connection

REAP_TRIES = 3


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
    """The reaper's periodic run. A run that loses its database connection (a terminated
    backend, a restart) is tried again at once on a fresh one, up to REAP_TRIES times: beat
    sends the next run only 30 s later, and jobs lost with the broker wait for it (the chaos
    run, docs/reliability.md). A run is idempotent, so a retry after a partial one is safe."""
    return on_fresh_connection(
        lambda: services.jobs_reap(), tries=REAP_TRIES, what="Reaper run", backoff_s=0.5
    )
