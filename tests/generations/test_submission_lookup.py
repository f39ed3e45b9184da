"""The submission's one-statement lookup (generations.services.submission_lookup, issue 16)
gives what the two selectors it replaces give: `selectors.rate_current_for_slug` (the price in
force, its model and pool) and `overrides.selectors.override_in_force` (the organization's
contract price in force), at the same instant, in every case the rules distinguish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations.models import AIModel, CreditRate, Job
from generations.overrides.models import PriceOverride
from generations.overrides.selectors import override_in_force
from generations.selectors import rate_current_for_slug
from generations.services import generation_submit, submission
from generations.services.submission_lookup import (
    job_publish_record,
    rate_and_override_for_slug,
)
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def org():
    return make_org(slug="acme")


@pytest.fixture
def other():
    return make_org(slug="other")


def override(org, model, *, at, credits=None, discount=None):
    return PriceOverride.objects.create(
        organization=org,
        model=model,
        credits=credits,
        discount_percent=discount,
        effective_from=at,
        reason="contract",
    )


def assert_same_as_the_selectors(slug, org, now=NOW):
    rate, found = rate_and_override_for_slug(model_slug=slug, organization_id=org.pk, now=now)
    expected = rate_current_for_slug(model_slug=slug, now=now)
    if expected is None:
        assert (rate, found) == (None, None)
        return None, None
    assert rate is not None
    for model_cls, got, want in (
        (CreditRate, rate, expected),
        (AIModel, rate.model, expected.model),
    ):
        for field in model_cls._meta.concrete_fields:
            assert getattr(got, field.attname) == getattr(want, field.attname), field.name
    assert rate.model.pool == expected.model.pool
    if expected.model.pool is not None:
        assert rate.model.pool.slug == expected.model.pool.slug
    want_override = override_in_force(organization_id=org.pk, model_id=rate.model_id, at=now)
    assert (found.pk if found else None) == (want_override.pk if want_override else None)
    if found is not None:
        assert (found.credits, found.discount_percent) == (
            want_override.credits,
            want_override.discount_percent,
        )
    return rate, found


def test_the_price_in_force_and_no_override(org):
    model = make_ai_model("sdxl", credits="5", params_schema={"type": "object"})
    CreditRate.objects.create(
        model=model, credits="7", reason="raise", effective_from=NOW - timedelta(days=1)
    )
    CreditRate.objects.create(
        model=model, credits="9", reason="future", effective_from=NOW + timedelta(seconds=1)
    )
    rate, found = assert_same_as_the_selectors("sdxl", org)
    assert rate.credits == Decimal("7.000") and found is None
    assert rate.model.params_schema == {"type": "object"}  # the JSON column, decoded
    assert rate.model.pool.slug == "a100"
    # Exactly at a version's effective_from it is in force.
    rate, _ = assert_same_as_the_selectors("sdxl", org, now=NOW + timedelta(seconds=1))
    assert rate.credits == Decimal("9.000")


def test_unknown_inactive_and_unpriced_models_find_nothing(org):
    make_ai_model("old", is_active=False)
    AIModel.objects.create(slug="new", name="New")  # no price, no pool
    later = make_ai_model("later")
    CreditRate.objects.filter(model=later).update(effective_from=NOW + timedelta(days=1))
    for slug in ("nope", "old", "new", "later", ""):
        assert rate_and_override_for_slug(model_slug=slug, organization_id=org.pk, now=NOW) == (
            None,
            None,
        )
        assert_same_as_the_selectors(slug, org)


def test_a_model_without_a_pool_is_found_without_one(org):
    model = AIModel.objects.create(slug="poolless", name="P")
    CreditRate.objects.create(model=model, credits="2", reason="x", effective_from=NOW)
    rate, _ = assert_same_as_the_selectors("poolless", org)
    assert rate.model.pool_id is None and rate.model.pool is None


def test_the_overrides_in_force_follow_override_in_force(org, other):
    sdxl = make_ai_model("sdxl")
    make_ai_model("flux")
    day = timedelta(days=1)
    # Another organization's override and a future one never apply.
    override(other, sdxl, at=NOW - day, credits="1")
    override(org, sdxl, at=NOW + day, credits="2")
    assert assert_same_as_the_selectors("sdxl", org)[1] is None
    # The all-models override applies to every model…
    all_models = override(org, None, at=NOW - 3 * day, discount="10")
    assert assert_same_as_the_selectors("sdxl", org)[1].pk == all_models.pk
    assert assert_same_as_the_selectors("flux", org)[1].pk == all_models.pk
    # …the model's own wins, its latest version…
    override(org, sdxl, at=NOW - 2 * day, credits="3")
    own = override(org, sdxl, at=NOW - day, credits="4")
    assert assert_same_as_the_selectors("sdxl", org)[1].pk == own.pk
    assert assert_same_as_the_selectors("flux", org)[1].pk == all_models.pk
    # …until it ends: the all-models one again.
    override(org, sdxl, at=NOW - timedelta(hours=1))
    assert assert_same_as_the_selectors("sdxl", org)[1].pk == all_models.pk
    # The all-models one ended too: the list price.
    override(org, None, at=NOW - timedelta(minutes=1))
    assert assert_same_as_the_selectors("sdxl", org)[1] is None
    assert assert_same_as_the_selectors("flux", org)[1] is None
    # Two versions at the same instant: the higher id, as the selector orders them.
    same = NOW - timedelta(seconds=30)
    override(org, sdxl, at=same, credits="5")
    last = override(org, sdxl, at=same, credits="6")
    assert assert_same_as_the_selectors("sdxl", org)[1].pk == last.pk


def test_the_lookup_is_one_statement_in_djangos_query_log(org):
    make_ai_model("sdxl")
    override(org, None, at=NOW - timedelta(days=1), discount="5")
    with CaptureQueriesContext(connection) as queries:
        rate, found = rate_and_override_for_slug(model_slug="sdxl", organization_id=org.pk, now=NOW)
        assert rate.model.pool.slug == "a100"  # loaded: no lazy query
        assert found.discount_percent == Decimal("5.00")
    assert len(queries) == 1


def test_the_publish_record_sets_and_clears_published_at(org):
    make_ai_model("sdxl")
    with mock.patch.object(submission, "enqueue", return_value=True):
        job, _ = generation_submit(organization=org, model_slug="sdxl", params={"prompt": "a"})
    job_publish_record(job_id=job.pk, published=True, at=NOW)
    job_publish_record(job_id=job.pk, published=True, at=NOW + timedelta(seconds=1))
    row = Job.objects.values("published_at", "publish_count").get(pk=job.pk)
    assert row == {"published_at": NOW + timedelta(seconds=1), "publish_count": 2}
    job_publish_record(job_id=job.pk, published=False, at=NOW)
    row = Job.objects.values("published_at", "publish_count").get(pk=job.pk)
    assert row == {"published_at": None, "publish_count": 2}


def test_the_idempotency_lookup_finds_only_the_organizations_own_keyed_job(
    django_assert_num_queries,
):
    from generations.services.submission_lookup import job_by_idempotency_key

    make_ai_model("sdxl", credits="5")
    acme, other = make_org(slug="acme-k"), make_org(slug="other-k")
    with mock.patch.object(submission, "enqueue"):
        job, _ = generation_submit(
            organization=acme, model_slug="sdxl", params={"prompt": "a"}, idempotency_key="k-1"
        )
        generation_submit(
            organization=other, model_slug="sdxl", params={"prompt": "b"}, idempotency_key="k-2"
        )
    with django_assert_num_queries(1):
        found = job_by_idempotency_key(organization_id=acme.pk, key="k-1")
    assert (found.pk, found.params, found.status) == (job.pk, job.params, job.status)
    assert found.request_fingerprint == job.request_fingerprint
    assert job_by_idempotency_key(organization_id=other.pk, key="k-1") is None
    assert job_by_idempotency_key(organization_id=acme.pk, key="k-2") is None
