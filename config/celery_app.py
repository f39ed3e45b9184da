"""The Celery application. Settings come from Django's settings, prefixed CELERY_.

Plumbing only: the apps connect their own worker hooks in their AppConfig.ready() (e.g. the
gpu.<pool> queues of pools created after the settings: `generations.celery_hooks`). Here: workers
and beat log as the web does, the log context travels in task headers (config/logs.py), and
tracing starts in each worker process when OTEL_ENABLED (config/tracing.py)."""

import os

from celery import Celery, signals

from config import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

signals.setup_logging.connect(logs.celery_logging_setup, weak=False)
signals.before_task_publish.connect(logs.celery_before_publish, weak=False)
signals.task_prerun.connect(logs.celery_task_prerun, weak=False)
signals.task_postrun.connect(logs.celery_task_postrun, weak=False)


@signals.worker_process_init.connect(weak=False)
def _tracing_start(**kwargs) -> None:
    from config import tracing

    tracing.tracing_start(role="worker")


@signals.worker_process_init.connect(weak=False)
def _urls_load(**kwargs) -> None:
    """Load the URLconf (every app's urls, views, serializers) as the worker process starts,
    not during its first task: the simulated backend's result URL (`reverse`) made the first
    job of each process ~0.5 s slower (issue 16, submit → succeeded p99)."""
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 - the property builds the resolver's tables
