"""The worker's fixed SELECTs (generations.services.execution_lookup, issue 16) give what the
ORM's queries they replace give: the same instances with the same field values, the same
related instances cached (None for a NULL hold, rate or pool), the same `pool_managed`, and the
same row lock (the job's row only)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from generations import services
from generations.models import AIModel, Job
from generations.services.execution_lookup import job_locked_for_claim, job_locked_for_finish
from infra_costs import fleet
from infra_costs.models import AutoscalePolicy
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db


def orm_claim(job_id):
    return (
        Job.objects.select_for_update(of=("self",))
        .select_related("model", "model__pool", "organization", "hold")
        .annotate(pool_managed=fleet.pool_managed("model__pool_id"))
        .get(pk=job_id)
    )


def orm_finish(job_id):
    return (
        Job.objects.select_for_update(of=("self",))
        .select_related("model", "organization", "hold", "rate")
        .get(pk=job_id)
    )


def values(instance):
    if instance is None:
        return None
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def cached(instance, name: str):
    """The related instance cached on `instance` under `name` (without loading it)."""
    field = instance._meta.get_field(name)
    assert field.is_cached(instance), f"{name} not cached"
    return field.get_cached_value(instance)


def assert_same(ours: Job, theirs: Job, relations: list[str]) -> None:
    assert type(ours) is Job and not ours._state.adding and ours._state.db == "default"
    assert values(ours) == values(theirs)
    for name in relations:
        assert values(cached(ours, name)) == values(cached(theirs, name)), name
    hold = cached(ours, "hold")
    if hold is not None:  # the reverse one-to-one, as select_related sets it
        assert hold._meta.get_field("job").get_cached_value(hold) is ours


def submit(org, prompt="a cat", model="sdxl"):
    job, _ = services.generation_submit(
        organization=org, model_slug=model, params={"prompt": prompt}
    )
    return job


@pytest.mark.parametrize("policy", [None, True, False], ids=["no policy", "enabled", "disabled"])
def test_the_claim_select_matches_the_orm(policy):
    org = make_org(plan="studio")
    model = make_ai_model(credits="4")
    if policy is not None:
        AutoscalePolicy.objects.create(pool=model.pool, enabled=policy)
    job = submit(org)
    with transaction.atomic():
        ours, theirs = job_locked_for_claim(str(job.pk)), orm_claim(job.pk)
    assert_same(ours, theirs, ["model", "organization", "hold"])
    assert values(cached(ours.model, "pool")) == values(cached(theirs.model, "pool"))
    assert ours.pool_managed is theirs.pool_managed is bool(policy)
    assert ours.hold is not None and ours.rate_id is not None


def test_null_relations_are_cached_as_none():
    org = make_org(plan="studio")
    model = make_ai_model(credits="4")
    job = submit(org)
    # A job without hold or pinned rate, on a model without pool (all three are nullable).
    Job.objects.filter(pk=job.pk).update(hold=None, rate=None)
    AIModel.objects.filter(pk=model.pk).update(pool=None)
    with transaction.atomic():
        claim, orm = job_locked_for_claim(job.pk), orm_claim(job.pk)
        assert_same(claim, orm, ["model", "organization", "hold"])
        assert cached(claim, "hold") is None and cached(claim.model, "pool") is None
        assert claim.pool_managed is False
        finish, orm = job_locked_for_finish(job.pk), orm_finish(job.pk)
        assert_same(finish, orm, ["model", "organization", "hold", "rate"])
        assert cached(finish, "hold") is None and cached(finish, "rate") is None


def test_the_finish_select_matches_the_orm():
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    job = submit(org)
    with transaction.atomic():
        ours, theirs = job_locked_for_finish(job.pk), orm_finish(job.pk)
    assert_same(ours, theirs, ["model", "organization", "hold", "rate"])
    assert ours.params["prompt"] == "a cat"  # the JSON column converted as the ORM does


def test_a_missing_job_is_none_and_a_malformed_id_fails_as_the_orm_does():
    with transaction.atomic():
        assert job_locked_for_claim(uuid.uuid4()) is None
        assert job_locked_for_finish(str(uuid.uuid4())) is None
    with pytest.raises(ValidationError):
        job_locked_for_claim("not-a-uuid")
    with pytest.raises(ValidationError):
        orm_claim("not-a-uuid")


def test_each_select_is_one_statement(django_assert_num_queries):
    org = make_org(plan="studio")
    make_ai_model(credits="4")
    job = submit(org)
    with transaction.atomic():
        with django_assert_num_queries(2) as queries:
            claimed = job_locked_for_claim(job.pk)
            finished = job_locked_for_finish(job.pk)
        # What the claim and the finish read needs no further query.
        claimed.model.pool.slug, claimed.organization.slug, claimed.hold.status
        finished.rate.credits, finished.hold.amount, finished.model.slug
    assert all(q["sql"].endswith("FOR UPDATE OF j") for q in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lookup", [job_locked_for_claim, job_locked_for_finish])
def test_only_the_job_row_is_locked(lookup):
    """FOR UPDATE OF the job: another transaction can't lock the job meanwhile, but can lock
    the hold (and the model, pool, organization) — as with the ORM's `of=("self",)`."""
    org = make_org(plan="studio")
    make_ai_model(credits="4")
    job = submit(org)
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or None,
        port=settings["PORT"] or None,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=False,
    )
    try:
        with transaction.atomic():
            assert lookup(job.pk) is not None
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(
                    f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                    [job.pk],
                )
            other.rollback()
            hold_table = job.hold._meta.db_table
            other.execute(
                f"SELECT 1 FROM {hold_table} WHERE id = %s FOR UPDATE NOWAIT", [job.hold_id]
            )
            other.rollback()
    finally:
        other.close()


def test_the_fixed_update_writes_what_the_orm_writes():
    """`job_save_with_event`'s UPDATE (fixed SQL for plain values) against `save(update_fields)`:
    JSON, NULL JSON, decimals, datetimes; an F() still goes through the ORM's compiler."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from django.db.models import F

    from generations.services.events import job_save_with_event

    org = make_org(plan="studio")
    make_ai_model(credits="4")
    ours, theirs = submit(org, "one"), submit(org, "two")
    at = datetime(2026, 12, 3, 4, 5, 6, 789000, tzinfo=UTC)
    fields = ["status", "result", "finished_at", "lease_expires_at", "credits_charged"]
    fields += ["actual_units", "node"]
    for job in (ours, theirs):
        job.status, job.result, job.finished_at = "succeeded", {"url": "x", "n": [1, None]}, at
        job.lease_expires_at, job.credits_charged, job.actual_units = None, Decimal("1.250"), None
        job.node = "n-1"
    job_save_with_event(ours, update_fields=fields, status="succeeded", at=at, message="m")
    theirs.save(update_fields=fields)
    columns = [*fields, "attempts"]
    row = dict(Job.objects.filter(pk=ours.pk).values(*columns).get())
    assert row == dict(Job.objects.filter(pk=theirs.pk).values(*columns).get())
    assert Job.objects.filter(pk=ours.pk, actual_units__isnull=True).exists()  # SQL NULL
    last = ours.events.order_by("-id").values_list("status", "node", "message").first()
    assert last == ("succeeded", "n-1", "m")
    ours.attempts = F("attempts") + 2
    job_save_with_event(ours, update_fields=["attempts"], status="running", at=at)
    assert Job.objects.get(pk=ours.pk).attempts == 2


def test_subscribed_endpoints_as_the_orm_finds_them():
    from accounts.webhooks.models import WebhookEndpoint
    from accounts.webhooks.services import _subscribed

    org, other = make_org(plan="studio"), make_org(plan="studio")

    def endpoint(organization, types, enabled=True):
        return WebhookEndpoint.objects.create(
            organization=organization, url="https://example.com/h", event_types=types,
            secret="s", enabled=enabled,
        )  # fmt: skip

    succeeded, failed = "generation.succeeded", "generation.failed"
    endpoint(org, [succeeded, failed])
    endpoint(org, [failed])
    endpoint(org, [succeeded], enabled=False)
    endpoint(org, [succeeded])
    endpoint(other, [succeeded])
    endpoint(None, [succeeded])
    for organization in (org, other, None, make_org(plan="studio")):
        for type in (succeeded, failed):
            expected = list(
                WebhookEndpoint.objects.filter(
                    organization=organization, enabled=True, event_types__contains=[type]
                ).values_list("pk", flat=True)
            )
            assert _subscribed(organization, type) == expected
    assert len(_subscribed(org, succeeded)) == 2


def test_gpu_run_finish_updates_only_the_runs_the_orm_would():
    """`infra_costs.services.gpu_run_finish` (fixed SQL since issue 16): only a running run
    ends (a replay changes nothing), `correct_lost` also corrects a failed one, and a start the
    backend knows better is kept, never after the finish."""
    from datetime import UTC, datetime, timedelta

    from infra_costs import services as infra
    from infra_costs.models import GpuRun, RunStatus
    from tests.factories import make_pool

    pool = make_pool()
    start = datetime(2026, 12, 1, 10, tzinfo=UTC)
    end = start + timedelta(minutes=5)
    for name in ("a", "b"):
        infra.gpu_run_start(
            external_id=name, model_slug="m", pool=pool, node_name="n1", started_at=start
        )
    assert infra.gpu_run_finish(external_id="a", status=RunStatus.SUCCEEDED, finished_at=end) == 1
    assert infra.gpu_run_finish(external_id="a", status=RunStatus.FAILED, finished_at=end) == 0
    assert infra.gpu_run_finish(external_id="zz", status="failed", finished_at=end) == 0
    assert infra.gpu_run_finish(external_id="b", status="failed", finished_at=end) == 1
    later = end + timedelta(minutes=1)
    assert infra.gpu_run_finish(external_id="b", status="succeeded", finished_at=later) == 0
    assert (
        infra.gpu_run_finish(
            external_id="b",
            status="succeeded",
            finished_at=later,
            started_at=later + timedelta(hours=1),  # after the finish: capped at it
            correct_lost=True,
        )
        == 1
    )
    runs = {r.external_id: r for r in GpuRun.objects.filter(external_id__in=["a", "b"])}
    assert (runs["a"].status, runs["a"].started_at, runs["a"].finished_at) == (
        "succeeded",
        start,
        end,
    )
    assert (runs["b"].status, runs["b"].started_at, runs["b"].finished_at) == (
        "succeeded",
        later,
        later,
    )
    with pytest.raises(ValueError):
        infra.gpu_run_finish(external_id="a", status="running", finished_at=end)
