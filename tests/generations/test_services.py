"""Submission, running and cancelling through the services, with the simulated backend."""

from decimal import Decimal as D

import pytest
from django.test import override_settings

from config.errors import IdempotencyConflict, InsufficientCredits, ValidationError
from credits.models import CreditAccount, CreditHold, EntryKind, HoldStatus, LedgerEntry
from generations import services
from generations.models import Job, JobEvent, JobStatus
from infra_costs.models import GpuRun
from tests.factories import account_of, make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


def submit(org, model="sdxl", params=None, **kw):
    return services.generation_submit(
        organization=org, model_slug=model, params=params or {"prompt": "a cat"}, **kw
    )


def test_submit_holds_the_pinned_price_and_queues_the_job():
    org = make_org(plan="starter")
    make_ai_model(credits="7.5")
    job, created = submit(org)
    assert created
    assert job.status == JobStatus.QUEUED
    assert job.credits_held == D("7.5")
    assert job.hold.status == HoldStatus.HELD
    assert account_of(org).held == D("7.5")
    assert list(job.events.values_list("status", flat=True)) == ["queued"]


def test_the_job_and_its_queued_event_written_in_one_statement_match_what_was_accepted():
    org = make_org(plan="starter")
    make_ai_model(credits="7.5")
    job, _ = submit(org, params={"prompt": "a cat", "seed": 3}, idempotency_key="k-1")
    stored = Job.objects.get(pk=job.pk)
    for field in Job._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name
    assert stored.rate_id is not None and stored.hold_id == job.hold.pk
    event = JobEvent.objects.get(job=job)
    assert (event.status, event.at, event.node, event.worker) == ("queued", job.created_at, "", "")
    assert event.message == "accepted at 7.5 credits"
    assert not job._state.adding  # a saved instance: save() would UPDATE, not INSERT again


def test_run_succeeds_and_captures_exactly_once():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job, _ = submit(org)
    assert services.generation_run(job_id=job.pk) == "succeeded"
    assert services.generation_run(job_id=job.pk) == "already succeeded"  # redelivery
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.credits_charged == D(5)
    assert job.result["type"] == "image"
    assert LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.CAPTURE).count() == 1
    assert account_of(org).balance == D(495)
    statuses = list(JobEvent.objects.filter(job=job).values_list("status", flat=True))
    assert statuses == ["queued", "running", "succeeded"]
    run = GpuRun.objects.get(external_id=str(job.pk))
    assert (run.status, run.model_slug, run.node.name) == ("succeeded", "sdxl", job.node)
    assert run.finished_at >= run.started_at


def test_backend_failure_releases_once():
    org = make_org(plan="starter")
    make_ai_model()
    job, _ = submit(org, params={"prompt": "boom [fail]"})
    assert services.generation_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert (job.status, job.credits_charged, job.error_code) == ("failed", 0, "gpu_failure")
    assert CreditHold.objects.get(pk=job.hold_id).status == HoldStatus.RELEASED
    assert account_of(org).balance == D(500)
    assert account_of(org).held == 0


def test_customer_fault_failure_is_charged():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    job, _ = submit(org, params={"prompt": "nope [reject]"})
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.credits_charged) == ("failed", D(5))
    assert account_of(org).balance == D(495)


def test_cancel_releases_a_queued_job_and_the_worker_then_skips_it():
    org = make_org(plan="starter")
    make_ai_model()
    job, _ = submit(org)
    services.generation_cancel(job=job)
    services.generation_cancel(job=job)  # twice: no second release
    assert services.generation_run(job_id=job.pk) == "already cancelled"
    assert account_of(org).held == 0
    assert LedgerEntry.objects.filter(hold=job.hold, kind=EntryKind.RELEASE).count() == 1


def test_a_cancel_with_audit_by_writes_its_audit_row_in_the_same_transaction(monkeypatch):
    from accounts.models import AuditEvent
    from generations.services import cancel

    org = make_org(plan="starter")
    make_ai_model()
    job, _ = submit(org)

    def broken(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(cancel, "audit_record", broken)
    with pytest.raises(RuntimeError):
        services.generation_cancel(job=job, audit_by="admin")
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and account_of(org).held == job.credits_held  # undone
    monkeypatch.undo()
    services.generation_cancel(job=job, audit_by="admin")
    (event,) = AuditEvent.objects.filter(action="generation.cancelled", target_id=str(job.pk))
    assert event.data == {"released": str(job.credits_held), "by": "admin"}
    other, _ = submit(org, params={"prompt": "another"})
    services.generation_cancel(job=other)  # a customer's cancel: the status log only
    assert not AuditEvent.objects.filter(target_id=str(other.pk)).exists()


def test_running_jobs_cannot_be_cancelled():
    org = make_org(plan="starter")
    make_ai_model()
    job, _ = submit(org)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    with pytest.raises(ValidationError):
        services.generation_cancel(job=job)


def test_price_is_pinned_at_acceptance():
    org = make_org(plan="starter")
    model = make_ai_model(credits="5")
    job, _ = submit(org)
    services.rate_set(model=model, credits="9", reason="GPU prices up", actor=None)
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.credits_charged == D(5)
    assert submit(org, params={"prompt": "again"})[0].credits_held == D(9)


def test_idempotency_key_replay_returns_the_same_job_and_conflicts_on_a_different_body():
    org = make_org(plan="starter")
    make_ai_model()
    first, created = submit(org, idempotency_key="req-1")
    again, created_again = submit(org, idempotency_key="req-1")
    assert created and not created_again and first.pk == again.pk
    with pytest.raises(IdempotencyConflict):
        submit(org, params={"prompt": "a dog"}, idempotency_key="req-1")
    assert Job.objects.count() == 1
    assert account_of(org).held == D(5)


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": ""},
        {"prompt": 3},
        {"seed": 1},
        {"prompt": "x", "seed": "1"},
        {"prompt": "x", "steps": 5},
        ["prompt"],
    ],
)
def test_params_rejected_by_the_schema_hold_nothing(params):
    org = make_org(plan="starter")
    make_ai_model()
    with pytest.raises(ValidationError) as exc:
        submit(org, params=params)
    assert exc.value.errors
    assert not Job.objects.exists()
    assert CreditAccount.objects.get(organization=org).held == 0


def test_unknown_or_inactive_model_is_a_validation_error():
    org = make_org(plan="starter")
    make_ai_model(slug="old", is_active=False)
    for slug in ("nope", "old"):
        with pytest.raises(ValidationError):
            submit(org, model=slug)


def test_insufficient_credits_refuses_and_writes_nothing():
    org = make_org(plan="free")  # 50 credits, hard stop
    make_ai_model(credits="60")
    with pytest.raises(InsufficientCredits):
        submit(org)
    assert not Job.objects.exists()


@override_settings(GENERATIONS_FREE_TIER_MAX_QUEUED=2)
def test_free_tier_gets_server_busy_when_the_pool_queue_is_saturated():
    from config.errors import ServerBusy

    paid = make_org(plan="studio")
    free = make_org(plan="free")
    make_ai_model(credits="1")
    submit(paid, params={"prompt": "1"})
    submit(paid, params={"prompt": "2"})
    with pytest.raises(ServerBusy) as exc:
        submit(free)
    assert exc.value.headers["Retry-After"]
    assert submit(paid, params={"prompt": "3"})[1]  # paid tiers are not refused


@override_settings(GENERATIONS_RESULT_CACHE_TTL_S=3600)
def test_identical_request_is_served_from_the_cache_free_of_charge():
    org = make_org(plan="starter")
    make_ai_model(credits="5")
    first, _ = submit(org, params={"prompt": "a cat", "seed": 1})
    services.generation_run(job_id=first.pk)
    second, _ = submit(org, params={"seed": 1, "prompt": "a cat"})
    assert second.cached and second.status == JobStatus.SUCCEEDED
    assert second.credits_charged == 0
    first.refresh_from_db()
    assert second.result == first.result
    other_tenant = make_org(plan="starter")
    third, _ = submit(other_tenant, params={"prompt": "a cat", "seed": 1})
    assert not third.cached  # the cache is per organization
