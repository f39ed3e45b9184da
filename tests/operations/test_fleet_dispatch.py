"""Dispatch to a fleet-managed pool: only hot nodes take work, waiting jobs are dispatched when
capacity appears, priority waits scale the pool at once, and the free tier is turned away
while the queue waits too long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from config.errors import ServerBusy
from generations import services
from generations.models import Job, JobStatus
from infra_costs import fleet
from infra_costs import services as infra_services
from infra_costs.models import AutoscalePolicy, GpuRun, NodeState, ScalingAction
from operations.fleet import fleet_tick
from tests.factories import make_account, make_ai_model, make_pool

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
FAST = {"rent_delay_s": [600, 600], "resume_delay_s": [120, 120], "model_load_s": 0}


@pytest.fixture
def pool(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    pool = make_pool("a100")
    AutoscalePolicy.objects.create(pool=pool, provider_config=FAST)
    make_ai_model("sdxl", pool=pool)
    return pool


def submit(org, prompt="a cat"):
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt}
    )
    return job


def test_a_job_waits_for_a_hot_node_and_runs_when_one_turns_hot(pool):
    org = make_account(plan="starter", credits=1000).organization
    with time_machine.travel(T0, tick=False) as traveller:
        node = fleet.node_rent(pool=pool, now=T0, primary=True)
        job = submit(org)
        assert services.generation_run(job_id=job.pk) == "waiting for a node"
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED and job.node == ""
        assert not GpuRun.objects.exists()
        traveller.move_to(T0 + timedelta(minutes=11))
        result = fleet_tick(now=T0 + timedelta(minutes=11))
        assert result.dispatched == 1  # published again now that a slot is free
        assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    node.refresh_from_db()
    assert job.node == node.name
    assert (node.state, node.running_jobs) == (NodeState.HOT, 0)


def test_every_slot_taken_means_the_next_job_waits(pool):
    org = make_account(plan="starter", credits=1000).organization
    with time_machine.travel(T0, tick=False):
        node = fleet.node_rent(pool=pool, now=T0 - timedelta(hours=1), primary=True)
        fleet.fleet_advance(now=T0)
        assert fleet.node_acquire(pool_id=pool.pk, now=T0) == node.name  # another job runs
        job = submit(org)
        assert services.generation_run(job_id=job.pk) == "waiting for a node"
        assert fleet.node_free(node_name=node.name, now=T0) == pool.pk
        assert services.generation_run(job_id=job.pk) == "succeeded"


def test_a_priority_job_waiting_over_30_s_scales_up_at_once(pool):
    org = make_account(plan="creator", credits=1000).organization  # the "high" tier
    with time_machine.travel(T0, tick=False) as traveller:
        primary = fleet.node_rent(pool=pool, now=T0 - timedelta(hours=1), primary=True)
        standby = fleet.node_rent(pool=pool, now=T0 - timedelta(hours=1))
        fleet.fleet_advance(now=T0 - timedelta(minutes=30))
        fleet.node_stop(node=standby, now=T0 - timedelta(minutes=30))
        fleet.fleet_advance(now=T0 - timedelta(minutes=29))
        name = fleet.node_acquire(pool_id=pool.pk, now=T0)  # the primary is busy
        infra_services.gpu_run_start(
            external_id="busy", model_slug="sdxl", pool=pool, node_name=name, started_at=T0
        )
        submit(org)
        assert fleet_tick(now=T0 + timedelta(seconds=20)).decisions == []
        traveller.move_to(T0 + timedelta(seconds=31))
        [decision] = fleet_tick(now=T0 + timedelta(seconds=31)).decisions
    assert (decision.action, decision.node, decision.ok) == (ScalingAction.RESUME, standby, True)
    assert decision.reason == "a priority job has waited 31 s"
    assert decision.inputs["depth"] == 1
    assert decision.inputs["oldest_wait_s_by_tier"] == {"high": 31.0}
    primary.refresh_from_db()
    assert primary.state == NodeState.SERVING


def test_free_tier_gets_server_busy_while_the_queue_waits_over_60_s(pool):
    starter = make_account(plan="starter", credits=1000).organization
    free = make_account(plan="free", credits=1000).organization
    with time_machine.travel(T0, tick=False) as traveller:
        submit(starter)  # no node: it waits
        traveller.move_to(T0 + timedelta(seconds=59))
        submit(free)  # 59 s: still accepted
        traveller.move_to(T0 + timedelta(seconds=61))
        with pytest.raises(ServerBusy) as refused:
            submit(free, prompt="another")
        submit(starter, prompt="paid tiers still queue")
    assert refused.value.headers["Retry-After"]
    assert "waiting over 60 s" in refused.value.detail
    assert Job.objects.count() == 3  # the refused one wrote nothing


def test_the_reaper_leaves_waiting_jobs_of_managed_pools_to_the_fleet_tick(pool):
    org = make_account(plan="starter", credits=1000).organization
    with time_machine.travel(T0, tick=False):
        job = submit(org)
    services.jobs_reap(now=T0 + timedelta(hours=1))
    job.refresh_from_db()
    assert job.enqueued_at == T0  # not republished: its wait is still measured from T0
