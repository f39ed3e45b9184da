"""A real Celery worker keeps consuming when its Redis restarts under a running job (issue 13).

Before config/celery_transport.py, the worker's consumer died when Redis went away while a
job ran ("Unrecoverable error: AttributeError … 'hostname'"): the process lived on or exited,
consuming nothing either way. Here a worker (the project's settings, a Redis of the test's
own on a free port, restarted empty) finishes the job it was running, then runs a job
submitted after Redis came back, in the same process (with kombu's own transport,
CELERY_BROKER_TRANSPORT=kombu.transport.redis:Transport, the worker never reconnects). The
deterministic replay of the kombu bug: tests/config/test_celery_transport.py.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from credits.models import CreditAccount
from generations.models import Job, JobStatus
from tests.factories import make_ai_model, make_org
from tests.generations.conftest import wait_for
from tests.generations.test_worker import assert_charged_exactly_once, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_a_worker_whose_redis_restarts_under_a_running_job_runs_the_jobs_submitted_after(
    own_redis, start_worker
):
    broker = {"REDIS_URL": own_redis.url(0), "CELERY_BROKER_URL": own_redis.url(0)}
    # Two processes: one runs the job, the other leaves a BRPOP waiting, as a worker with
    # spare capacity does (the state in which the consumer used to die).
    worker = start_worker(concurrency=2, GENERATIONS_SIMULATED_SPEEDUP=1, **broker)
    org = make_org(plan="studio")
    make_ai_model(credits="3", backend_config={"mean_s": 3.0, "sigma": 0.05})
    running = submit(org)
    wait_for(
        lambda: Job.objects.filter(pk=running.pk, status=JobStatus.RUNNING).exists(),
        timeout=15,
        message="the first job to start",
    )

    own_redis.stop()  # SHUTDOWN NOSAVE: the broker's connections drop, its queues are gone
    own_redis.start()
    wait_for(
        lambda: worker.log.read_text().count("Connected to ") >= 2,
        timeout=15,
        message="the worker to reconnect",
    )
    after = submit(org, prompt="after the restart")
    wait_for(
        lambda: (
            not Job.objects.filter(
                pk__in=[running.pk, after.pk], status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
            ).exists()
        ),
        timeout=20,
        message="both jobs to finish",
    )

    log = worker.log.read_text()
    assert "Unrecoverable error" not in log
    assert worker.proc.poll() is None  # the same process consumed before and after
    assert set(
        Job.objects.filter(pk__in=[running.pk, after.pk]).values_list("status", flat=True)
    ) == {JobStatus.SUCCEEDED}
    assert_charged_exactly_once([running.pk, after.pk])
    assert CreditAccount.objects.get(organization=org).balance == D(10000) - D(6)
