"""The worker's path compiles few ORM statements (issue 16): the claim's and the finish's
row-locking SELECTs (generations.services.execution_lookup), the job's UPDATE
(events.job_save_with_event), the webhook lookup (accounts.webhooks `_subscribed`) and the GPU
run's end (infra_costs.services.gpu_run_finish) are fixed statements: compiling them with the
ORM cost more CPU than running them. Pinned here as the SQL compilations during one
`generation_run` of a simple succeeded job (7 before; the hold's expiry, credits', may be
one)."""

from __future__ import annotations

from functools import partial

import pytest

from generations import services
from generations.models import JobStatus
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db


def test_a_succeeded_run_compiles_a_pinned_number_of_statements(settings, compiled):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    submit = partial(services.generation_submit, organization=org, model_slug="sdxl")
    first, _ = submit(params={"prompt": "a dog"})
    assert services.generation_run(job_id=first.pk) == "succeeded"  # records the node
    job, _ = submit(params={"prompt": "a cat"})
    compiled.clear()
    assert services.generation_run(job_id=job.pk) == "succeeded"
    during = list(compiled)
    # Before: 6 (the claim's and the finish's SELECTs, the job's UPDATE twice, the webhook
    # lookup, the GPU run's UPDATE) plus the hold's expiry.
    assert not [c for c in during if c.endswith((":Job", ":WebhookEndpoint", ":GpuRun"))], during
    assert len(during) <= 2, during
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_a_finished_run_is_updated_in_its_own_month_only(settings):
    """The worker passes the run's recorded start (the attempt's start) to `gpu_run_finish`, so
    the GPU run's UPDATE names its month's `started_at` and is planned for that partition alone
    (issue 16: over 39 months, 1.6 ms of planning → 0.07 ms). A hint that matched nothing would
    cost a second UPDATE over every month: here there is exactly one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    submit = partial(services.generation_submit, organization=org, model_slug="sdxl")
    job, _ = submit(params={"prompt": "a cat"})
    with CaptureQueriesContext(connection) as ctx:
        assert services.generation_run(job_id=job.pk) == "succeeded"
    updates = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith("UPDATE") and "gpurun" in q["sql"]
    ]
    assert len(updates) == 1, updates
    assert "AND started_at = " in updates[0], updates[0]


def test_a_wrong_start_hint_still_finishes_the_run_once():
    """A hint that finds no run (a start corrected since it was read) falls back to the
    statement over every month; a replay with the right hint changes nothing."""
    from datetime import UTC, datetime, timedelta

    from infra_costs import services as infra
    from infra_costs.models import GpuRun, RunStatus
    from tests.factories import make_pool

    pool = make_pool()
    start = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    end = start + timedelta(minutes=5)
    infra.gpu_run_start(
        external_id="h", model_slug="m", pool=pool, node_name="n1", started_at=start
    )
    wrong = start + timedelta(days=3)  # another month: its partition holds no such run
    done = infra.gpu_run_finish(
        external_id="h", status=RunStatus.SUCCEEDED, finished_at=end, recorded_start=wrong
    )
    assert done == 1
    again = infra.gpu_run_finish(
        external_id="h", status=RunStatus.FAILED, finished_at=end, recorded_start=start
    )
    assert again == 0
    run = GpuRun.objects.get(external_id="h")
    assert (run.status, run.started_at, run.finished_at) == ("succeeded", start, end)
