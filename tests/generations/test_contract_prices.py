"""Per-organization price overrides and plan entitlements (issue 15, enterprise contracts and
entitlements per plan): an override applies in the quote, the hold and the actual-units capture
with its history recorded; entitlement refusals are 403s naming the entitlement and write
nothing; another tenant keeps list prices."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditEvent, Plan, User
from accounts.tenancy import tenant_scope
from config.errors import ValidationError
from credits.models import CreditHold, HoldStatus, LedgerEntry
from generations import services
from generations.models import Job, JobEvent, PriceOverride
from generations.overrides.services import price_override_set
from tests.config.helpers import assert_problem, bearer
from tests.factories import account_of, make_ai_model, make_org
from tests.generations.test_price_tables import TABLE, VIDEO_SCHEMA

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]

QUOTE = "/api/v1/generations/quote/"
GENERATIONS = "/api/v1/generations/"
PAST = timezone.now() - timedelta(days=1)


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def video():
    model = make_ai_model(
        "clip",
        credits="5",
        params_schema=VIDEO_SCHEMA,
        backend_config={"mean_s": 0.01, "actual_units": {"duration_s": 0.5}},
    )
    services.rate_set(model=model, price_table=TABLE, reason="per second", actor=None)
    return model


@pytest.fixture
def staff():
    return User.objects.create_user(email="am@example.com", password="pw-am-12345", is_staff=True)


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def acme_key(acme):
    return account_services.api_key_create(organization=acme, name="k", actor=None)[1]


def post(client, url, key, body):
    return client.post(url, data=json.dumps(body), content_type="application/json", **bearer(key))


def writes():
    return (
        Job.objects.count(),
        JobEvent.objects.count(),
        CreditHold.objects.count(),
        LedgerEntry.objects.count(),
    )


# --- Price overrides ------------------------------------------------------------------------------


def test_a_discount_applies_to_the_quote_the_hold_and_the_capture(
    client, acme, acme_key, video, staff
):
    price_override_set(
        organization=acme, model=video, actor=staff, reason="contract 2026",
        discount_percent="20", effective_from=PAST,
    )  # fmt: skip
    body = {"model": "clip", "params": {"prompt": "waves", "duration_s": 6}}
    quote = post(client, QUOTE, acme_key, body).json()
    # List 11.824 (test_price_tables); 20% off → 9.4592 → 9.459
    assert (quote["list_credits"], quote["credits"], quote["override"]) == (
        "11.824",
        "9.459",
        "20% off",
    )
    job = Job.objects.get(pk=post(client, GENERATIONS, acme_key, body).json()["id"])
    assert job.credits_held == job.hold.amount == D("9.459")
    assert services.generation_run(job_id=job.pk) == "succeeded"
    job.refresh_from_db()
    # 3 s actually made: list 7.324, 20% off → 5.8592 → 5.859; the rest released.
    assert job.credits_charged == D("5.859")
    hold = CreditHold.objects.get(pk=job.hold_id)
    assert (hold.status, hold.captured_amount) == (HoldStatus.CAPTURED, D("5.859"))


def test_a_model_override_wins_over_all_models_and_an_ending_row_restores_the_list_price(
    client, acme, acme_key, staff
):
    sdxl = make_ai_model("sdxl", credits="5")
    make_ai_model("flux", credits="8")
    price_override_set(
        organization=acme, model=None, actor=staff, reason="all", discount_percent="50",
        effective_from=PAST,
    )  # fmt: skip
    price_override_set(
        organization=acme, model=sdxl, actor=staff, reason="fixed", credits="2",
        effective_from=PAST,
    )  # fmt: skip

    def quoted(slug):
        return post(client, QUOTE, acme_key, {"model": slug, "params": {"prompt": "a"}}).json()

    assert quoted("sdxl")["credits"] == "2.000"
    assert quoted("flux")["credits"] == "4.000"
    price_override_set(organization=acme, model=sdxl, actor=staff, reason="ended")
    assert quoted("sdxl")["credits"] == "2.500"  # back to the all-models discount
    assert PriceOverride.objects.filter(organization=acme).count() == 3  # the history
    audit = AuditEvent.objects.filter(action="price_override.set").order_by("pk").last()
    assert audit.actor == staff
    assert (audit.data["before"], audit.data["after"], audit.data["reason"]) == (
        "2 credits",
        "list price",
        "ended",
    )


def test_a_job_accepted_before_an_override_keeps_its_price_at_capture(acme, video, staff):
    job, _ = services.generation_submit(
        organization=acme, model_slug="clip", params={"prompt": "waves", "duration_s": 6}
    )
    assert job.credits_held == D("11.824")
    price_override_set(
        organization=acme, model=video, actor=staff, reason="later", discount_percent="50"
    )
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.credits_charged == D("7.324")  # the list price of 3 s: no override then


def test_another_tenant_pays_list_prices_and_cannot_see_the_override(client, acme, video, staff):
    globex = make_org(slug="globex", plan="studio")
    price_override_set(
        organization=acme, model=None, actor=staff, reason="a", discount_percent="50",
        effective_from=PAST,
    )  # fmt: skip
    job, _ = services.generation_submit(
        organization=globex, model_slug="clip", params={"prompt": "waves", "duration_s": 6}
    )
    assert job.credits_held == D("11.824")
    with tenant_scope(globex.pk):
        assert not PriceOverride.objects.exists()


@pytest.mark.parametrize(
    "terms",
    [
        {"reason": ""},
        {"reason": "x", "credits": "2", "discount_percent": "10"},
        {"reason": "x", "discount_percent": "150"},
        {"reason": "x", "credits": "-1"},
        {"reason": "x", "credits": "0.0001"},
    ],
)
def test_bad_overrides_are_refused_and_write_nothing(acme, video, staff, terms):
    with pytest.raises(ValidationError):
        price_override_set(organization=acme, model=video, actor=staff, **terms)
    assert not PriceOverride.objects.exists()
    assert not AuditEvent.objects.filter(action="price_override.set").exists()


# --- Entitlements ---------------------------------------------------------------------------------


def test_the_default_entitlements_refuse_nothing(client, acme, acme_key, video):
    plan = Plan.objects.get(slug="studio")
    assert (plan.models_allowed, plan.max_megapixels, plan.max_batch_size) == (None, None, None)
    body = {
        "model": "clip",
        "params": {"prompt": "w", "duration_s": 60, "width": 4096, "height": 4096, "batch_size": 8},
    }
    assert post(client, GENERATIONS, acme_key, body).status_code == 202


@pytest.mark.parametrize(
    ("limits", "params", "name"),
    [
        ({"models_allowed": ["sdxl"]}, {}, "entitlement:models"),
        ({"max_megapixels": D("1")}, {"width": 2048, "height": 1024}, "entitlement:max_megapixels"),
        ({"max_megapixels": D("2")}, {}, None),  # the schema's 1024×1024 default fits
        ({"max_duration_s": 10}, {"duration_s": 12}, "entitlement:max_duration_s"),
        ({"max_batch_size": 2}, {"batch_size": 4}, "entitlement:max_batch_size"),
        ({"max_batch_size": 4}, {"batch_size": 4}, None),
    ],
)
def test_entitlement_refusals_name_the_entitlement_and_write_nothing(
    client, acme, acme_key, video, limits, params, name
):
    Plan.objects.filter(slug="studio").update(**limits)
    body = {"model": "clip", "params": {"prompt": "w", **params}}
    account = account_of(acme)
    before = writes()
    quote = post(client, QUOTE, acme_key, body)
    response = post(client, GENERATIONS, acme_key, body)
    if name is None:
        assert (quote.status_code, response.status_code) == (200, 202)
        return
    for refused in (quote, response):
        problem = assert_problem(refused, status=403, code="permission_denied")
        assert problem["limit"] == name
        assert "Upgrade" in problem["detail"]
    assert writes() == before
    account.refresh_from_db()
    assert account.held == 0


def test_the_organization_endpoint_lists_the_plans_entitlements(client, acme, acme_key):
    Plan.objects.filter(slug="studio").update(models_allowed=["sdxl"], max_batch_size=4)
    body = client.get("/api/v1/organization/", **bearer(acme_key)).json()
    assert body["plan"]["entitlements"] == {
        "api_access": True,
        "models_allowed": ["sdxl"],
        "max_megapixels": None,
        "max_duration_s": None,
        "max_batch_size": 4,
        "watermark": False,
        "priority": body["plan"]["queue_priority"],
    }
