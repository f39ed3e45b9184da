"""`JobSerializer` writes a job as DRF's generic `Serializer.to_representation` does (issue 16:
its fields are built and bound once per class instead of copied per job): the same JSON for a
job in every state, alone and in a list."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from generations.api.serializers import JobSerializer
from generations.models import Job, JobStatus
from generations.services import generation_submit, submission
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)


def generic(job: Job) -> dict:
    """DRF's own path: the serializer's per-instance fields."""
    return serializers.Serializer.to_representation(JobSerializer(job), job)


def rendered(data) -> dict:
    return json.loads(JSONRenderer().render(data))


@pytest.fixture
def jobs():
    org = make_org(slug="acme", plan="studio")
    make_ai_model("sdxl", credits="5.125")
    with mock.patch.object(submission, "enqueue", return_value=True):
        made = [
            generation_submit(
                organization=org, model_slug="sdxl", params={"prompt": f"p{i}", "seed": i}
            )[0]
            for i in range(4)
        ]
    queued, failed, succeeded, cancelled = made
    Job.objects.filter(pk=failed.pk).update(
        status=JobStatus.FAILED,
        error_code="gpu_failure",
        error="the node went away",
        credits_charged=Decimal(0),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        node="node-1",
    )
    Job.objects.filter(pk=succeeded.pk).update(
        status=JobStatus.SUCCEEDED,
        result={"images": ["https://example.com/a.png"], "nested": {"x": [1, 2.5, None]}},
        credits_charged=Decimal("5.125"),
        actual_units={"duration_s": 6},
        started_at=T0,
        finished_at=T0 + timedelta(milliseconds=1500),
        node="node-2",
    )
    Job.objects.filter(pk=cancelled.pk).update(
        status=JobStatus.CANCELLED, error="", error_code="", credits_charged=Decimal(0)
    )
    ended = Job.objects.filter(pk__in=[failed.pk, succeeded.pk, cancelled.pk])
    return [queued, *ended.select_related("model").order_by("created_at")]


def test_every_state_is_written_as_drf_writes_it(jobs):
    assert {job.status for job in jobs} == {"queued", "failed", "succeeded", "cancelled"}
    for job in jobs:
        data = JobSerializer(job).data
        assert data == generic(job)
        assert rendered(data) == rendered(generic(job))
    failed = next(j for j in jobs if j.status == JobStatus.FAILED)
    assert JobSerializer(failed).data["error"] == {
        "code": "gpu_failure",
        "message": "the node went away",
    }
    assert JobSerializer(jobs[0]).data["credits_held"] == "5.125"


def test_a_list_is_written_as_drf_writes_it(jobs):
    data = JobSerializer(jobs, many=True).data
    assert rendered(data) == [rendered(generic(job)) for job in jobs]
    assert list(data[0]) == JobSerializer.Meta.fields
