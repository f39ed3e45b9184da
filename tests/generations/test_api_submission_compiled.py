"""`POST /api/v1/generations/` compiles no ORM statement (issue 16): the job's INSERT (with its
status-log row, `events.job_insert_with_event`) is a fixed statement per process, like the
submission's lookups (config.rows). Compiling it with Django's `SQLInsertCompiler` was the last
ORM compilation on the request's path (~0.4 ms of CPU per POST, all of it between the job's
`created_at` and its publish). The fixed text and the values must be exactly the ORM's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Value
from django.db.models.sql import InsertQuery

from accounts import services as account_services
from generations.models import Job, JobEvent, JobStatus
from generations.services import events
from tests.config.helpers import bearer
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db


def test_a_submission_over_the_api_compiles_no_orm_statement(client, settings, compiled):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    org = make_org(slug="acme", plan="studio")
    make_ai_model("sdxl", credits="5")
    raw = account_services.api_key_create(organization=org, name="k", actor=None)[1]
    body = {"model": "sdxl", "params": {"prompt": "a cat", "seed": 1}}
    post = lambda: client.post(  # noqa: E731
        "/api/v1/generations/", body, content_type="application/json", **bearer(raw)
    )
    assert post().status_code == 202  # the key's first request: its lookup and last_used write
    body["params"]["seed"] = 2
    compiled.clear()
    response = post()
    assert response.status_code == 202, response.content
    assert compiled == []  # before: ["SQLInsertCompiler:Job"]
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.status, job.params["seed"], job.credits_held) == ("queued", 2, Decimal(5))
    assert JobEvent.objects.filter(job=job, status=JobStatus.QUEUED).count() == 1


def _plain(params: list) -> list:
    """psycopg's adapters (`Jsonb`) compare by identity: compare their type and payload."""
    return [(type(p), p.obj) if hasattr(p, "obj") else p for p in params]


def _orm_insert(job: Job):
    query = InsertQuery(Job)
    query.insert_values(list(Job._meta.concrete_fields), [job])
    [(sql, params)] = query.get_compiler(using="default").as_sql()
    return sql, list(params)


def test_the_fixed_insert_is_the_orms_text_and_values(monkeypatch):
    org = make_org(plan="studio")
    model = make_ai_model("sdxl", credits="5")
    job = Job(
        id=uuid.uuid4(),
        organization=org,
        model=model,
        params={"prompt": "ünïcode ✓", "seed": 7, "nested": [1, {"a": None}]},
        params_hash="ab" * 32,
        idempotency_key="k-1",
        request_fingerprint="cd" * 32,
        created_at=datetime(2026, 12, 3, 4, 0, 0, 123456, tzinfo=UTC),
        credits_held=Decimal("7.500"),
        priority=3,
        enqueued_at=datetime(2026, 12, 3, 4, 0, 1, tzinfo=UTC),
    )
    expected_sql, expected_params = _orm_insert(job)
    seen = []
    real_execute = connection.cursor

    def spy():
        cursor = real_execute()
        execute = cursor.execute

        def recorded(sql, params=None):
            seen.append((sql, list(params or ())))
            return execute(sql, params)

        cursor.execute = recorded
        return cursor

    monkeypatch.setattr(connection, "cursor", spy)
    events.job_insert_with_event(job, JobStatus.QUEUED, at=job.created_at, message="m")
    [(sql, params)] = seen
    n = len(expected_params)
    assert sql.startswith(f"WITH new_job AS ({expected_sql} RETURNING ")
    assert _plain(params[:n]) == _plain(expected_params)
    assert params[n:] == [JobStatus.QUEUED, job.created_at, "", "", "m"]
    stored = Job.objects.get(pk=job.pk)
    for field in Job._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name


def test_an_expression_value_still_goes_through_the_orm(compiled):
    """A value the fixed text cannot carry (an expression) is compiled by the ORM as before."""
    org = make_org(plan="studio")
    model = make_ai_model("sdxl", credits="5")
    job = Job(
        id=uuid.uuid4(),
        organization=org,
        model=model,
        params={"prompt": "x"},
        params_hash="ef" * 32,
        created_at=datetime(2026, 12, 3, 4, 0, tzinfo=UTC),
        credits_held=Decimal(2),
        priority=Value(4),
    )
    compiled.clear()
    events.job_insert_with_event(job, JobStatus.QUEUED, at=job.created_at)
    assert compiled == ["SQLInsertCompiler:Job"]
    assert Job.objects.get(pk=job.pk).priority == 4


@pytest.mark.parametrize("prefix", ["/", "/mounted/", "/ün i/"])
def test_the_location_is_what_drf_reverse_builds(rf, prefix):
    """`job_location` reverses the path once per script prefix: same URL as DRF's reverse."""
    from django.urls import set_script_prefix
    from rest_framework.reverse import reverse

    from generations.api.views import job_location

    request = rf.post("/api/v1/generations/", HTTP_HOST="api.example.com", secure=True)
    set_script_prefix(prefix)
    try:
        for job_id in (uuid.uuid4(), uuid.uuid4()):
            expected = reverse("api-generation-detail", args=[job_id], request=request)
            assert job_location(request, job_id) == expected
            assert str(job_id) in expected and expected.startswith("https://api.example.com/")
    finally:
        set_script_prefix("/")
