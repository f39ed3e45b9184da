"""The real Celery worker fixtures of the generations tests, for the fleet's worker tests."""

from tests.generations.conftest import purge_queues, start_worker, worker_env  # noqa: F401
