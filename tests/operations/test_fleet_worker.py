"""A fleet-managed pool with a real Celery worker on Redis: jobs queue behind the one hot
node's single slot, each job's end dispatches the next (after commit), the queue drains in
priority order, and nothing ever ran on a node that was not hot."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from generations import services
from generations.models import Job, JobStatus
from infra_costs import fleet
from infra_costs.models import AutoscalePolicy, GpuRun, Node
from tests.factories import make_account, make_ai_model, make_pool
from tests.generations.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_jobs_wait_for_the_one_slot_and_drain_through_a_real_worker(start_worker, purge_queues):
    pool = make_pool("a100")
    AutoscalePolicy.objects.create(
        pool=pool, provider_config={"rent_delay_s": [0, 0], "model_load_s": 0}
    )
    make_ai_model("sdxl", pool=pool, backend_config={"mean_s": 0.2, "sigma": 0.01})
    now = timezone.now()
    hot = fleet.node_rent(pool=pool, now=now, primary=True)
    fleet.node_rent(pool=pool, now=now)  # stays renting (never advanced): takes no work
    Node.objects.exclude(pk=hot.pk).update(transition_ready_at=now + timedelta(days=1))
    fleet.fleet_advance(now=now, pool_ids=[pool.pk])
    hot.refresh_from_db()
    assert hot.takes_work
    starter = make_account(plan="enterprise", credits=1000).organization
    ids = [
        services.generation_submit(
            organization=starter, model_slug="sdxl", params={"prompt": f"cat {i}"}
        )[0].pk
        for i in range(5)
    ]
    # Two worker processes: both get tasks, only one job at a time gets the slot.
    start_worker(concurrency=2, GENERATIONS_SIMULATED_SPEEDUP="1")
    wait_for(
        lambda: not Job.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists(),
        timeout=90,
        message="the queue drains",
    )
    assert Job.objects.filter(pk__in=ids, status=JobStatus.SUCCEEDED).count() == 5
    assert set(Job.objects.filter(pk__in=ids).values_list("node", flat=True)) == {hot.name}
    runs = sorted(GpuRun.objects.all(), key=lambda r: r.started_at)
    for a, b in itertools.pairwise(runs):
        assert b.started_at >= a.finished_at  # one slot: never two at once
    hot.refresh_from_db()
    assert (hot.state, hot.running_jobs) == ("hot", 0)
