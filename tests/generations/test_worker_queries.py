"""Statements of one `generation_run` of a simple succeeded job (the worker path, issue 16):
pinned so a change that adds a round trip to every job shows up here.

Counts are Django's query log inside the test's transaction, so each durable block shows as
SAVEPOINT … RELEASE (BEGIN … COMMIT in production). The ledger's own prepared statements
(credits.ledger._core.execute, on a raw psycopg cursor: the hold's capture) are not in it and
are counted separately."""

from __future__ import annotations

import pytest

from credits.ledger import _core as ledger_core
from credits.models import EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import JobStatus
from infra_costs.models import GpuRun, RunStatus
from tests.factories import make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def ledger_statements(monkeypatch):
    """Counts the ledger's statements (they run unchanged)."""
    calls: list[str] = []
    real = ledger_core.execute

    def counted(sql, params):
        calls.append(sql)
        return real(sql, params)

    monkeypatch.setattr(ledger_core, "execute", counted)
    return calls


def submit(org, prompt: str):
    job, _ = services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt}
    )
    return job


def test_a_succeeded_run_takes_a_pinned_number_of_statements(
    django_assert_num_queries, ledger_statements
):
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    # A first job records the node (a node's first run only); the pinned one runs on it.
    assert services.generation_run(job_id=submit(org, "a dog").pk) == "succeeded"
    job = submit(org, "a cat")
    ledger_statements.clear()
    with django_assert_num_queries(12):
        # The claim (`_claim_recorded`):
        #   SAVEPOINT (BEGIN)
        #   SELECT the job FOR UPDATE, with model, pool, organization, hold, pool managed?
        #   (the hold's expiry, hold_extend: one ledger statement, not in this log)
        #   UPDATE the job to running + INSERT its status-log row (one CTE)
        #   INSERT the attempt's GPU run, its node looked up by name in the same statement
        #   RELEASE (COMMIT)
        # The finish (`_finish`):
        #   SAVEPOINT (BEGIN)
        #   SELECT the job FOR UPDATE, with model, organization, hold, rate
        #   (the hold's capture: one ledger statement, not in this log)
        #   UPDATE the job to succeeded + INSERT its status-log row (one CTE)
        #   SELECT the organization's webhook endpoints for generation.succeeded (none)
        #   UPDATE the GPU run to succeeded
        #   UPDATE the node's slot (node_free; a no-op on an unmanaged node)
        #   RELEASE (COMMIT)
        assert services.generation_run(job_id=job.pk) == "succeeded"
    assert len(ledger_statements) == 2  # the hold's expiry, the capture
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.credits_charged == job.credits_held
    assert job.hold.status == HoldStatus.CAPTURED
    assert LedgerEntry.objects.filter(hold_id=job.hold_id, kind=EntryKind.CAPTURE).count() == 1
    assert list(job.events.order_by("at", "id").values_list("status", "node")) == [
        ("queued", ""),
        ("running", job.node),
        ("succeeded", job.node),
    ]
    run = GpuRun.objects.get(external_id=str(job.pk))
    assert (run.status, run.node.name, run.model_slug) == (RunStatus.SUCCEEDED, job.node, "sdxl")
    assert run.finished_at is not None and run.started_at <= run.finished_at


def test_a_replayed_delivery_changes_nothing_and_takes_one_select(django_assert_num_queries):
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    job = submit(org, "a cat")
    assert services.generation_run(job_id=job.pk) == "succeeded"
    with django_assert_num_queries(3):  # SAVEPOINT, SELECT the job FOR UPDATE, RELEASE
        assert services.generation_run(job_id=job.pk) == "already succeeded"
    assert GpuRun.objects.filter(external_id=str(job.pk)).count() == 1
    assert job.events.count() == 3
