"""Batching: compatible queued jobs of a model run in one backend call on one node; each is
charged exactly once, and the batch's GPU time is split evenly so allocation stays exact."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal as D

import pytest

from credits.models import EntryKind, LedgerEntry
from generations import services
from generations.models import Job, JobStatus
from infra_costs import fleet
from infra_costs.models import AutoscalePolicy, GpuRun, Node, NodeState
from tests.factories import make_account, make_ai_model, make_pool

pytestmark = pytest.mark.django_db

SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "seed": {"type": "integer", "minimum": 0},
        "steps": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}


@pytest.fixture
def model(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0.01  # a real, short batch call
    return make_ai_model(
        "sdxl",
        params_schema=SCHEMA,
        backend_config={"mean_s": 1.0, "batch_size": 4},
    )


def submit(org, prompt, steps=30):
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt, "steps": steps}
    )
    return job


def test_compatible_jobs_run_in_one_call_and_split_its_gpu_time(model):
    org = make_account(plan="enterprise", credits=1000).organization
    jobs = [submit(org, f"cat {i}") for i in range(6)]
    odd = submit(org, "a dog", steps=50)  # other params: never in this batch
    assert services.generation_run(job_id=jobs[0].pk) == "succeeded"
    done = Job.objects.filter(status=JobStatus.SUCCEEDED)
    assert set(done.values_list("pk", flat=True)) == {j.pk for j in jobs[:4]}  # oldest first
    assert {j.node for j in done} == {Job.objects.get(pk=jobs[0].pk).node}
    assert Job.objects.get(pk=odd.pk).status == JobStatus.QUEUED
    runs = sorted(GpuRun.objects.filter(status="succeeded"), key=lambda r: r.started_at)
    assert len(runs) == 4
    lengths = {r.finished_at - r.started_at for r in runs}
    assert max(lengths) - min(lengths) <= timedelta(microseconds=1)  # an even split
    for a, b in itertools.pairwise(runs):
        assert abs(b.started_at - a.finished_at) <= timedelta(microseconds=1)  # they tile
    for job in done:
        assert job.credits_charged == D(5)
        entries = LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.CAPTURE)
        assert entries.count() == 1
    # Redelivered tasks of batch mates change nothing.
    assert services.generation_run(job_id=jobs[1].pk) == "already succeeded"


def test_a_mates_own_failure_fails_only_that_job(model):
    org = make_account(plan="enterprise", credits=1000).organization
    lead = submit(org, "cat")
    bad = submit(org, "cat [reject]")
    good = submit(org, "cat again")
    assert services.generation_run(job_id=lead.pk) == "succeeded"
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {lead.pk: "succeeded", bad.pk: "failed", good.pk: "succeeded"}
    bad.refresh_from_db()
    assert (bad.error_code, bad.credits_charged) == ("rejected_prompt", D(5))  # customer's fault


def test_a_batch_takes_one_slot_of_a_managed_node_and_gives_every_job_back(model):
    pool = model.pool
    AutoscalePolicy.objects.create(pool=pool, provider_config={"rent_delay_s": [0, 0]})
    node = fleet.node_rent(pool=pool, now=model.created_at)
    fleet.fleet_advance(now=node.transition_ready_at + timedelta(seconds=61))
    org = make_account(plan="enterprise", credits=1000).organization
    jobs = [submit(org, f"cat {i}") for i in range(3)]
    assert services.generation_run(job_id=jobs[0].pk) == "succeeded"
    node = Node.objects.get(pk=node.pk)
    assert (node.state, node.running_jobs) == (NodeState.HOT, 0)
    assert Job.objects.filter(status=JobStatus.SUCCEEDED, node=node.name).count() == 3


def test_models_without_batch_size_run_alone(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    make_ai_model("flux", pool=make_pool("l4"))
    org = make_account(plan="enterprise", credits=1000).organization
    a, _ = services.generation_submit(organization=org, model_slug="flux", params={"prompt": "x"})
    services.generation_submit(organization=org, model_slug="flux", params={"prompt": "y"})
    assert services.generation_run(job_id=a.pk) == "succeeded"
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 1
