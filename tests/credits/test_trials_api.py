"""`GET/POST /api/v1/trial/` and `GET /api/v1/referrals/` (issue 15)."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from accounts import services as account_services
from accounts.models import Plan, Role, Subscription, SubscriptionStatus
from credits.models import CreditGrant, GrantSource
from credits.trials import api
from credits.trials.models import OrganizationTrial, PlanTrial
from credits.trials.referrals import referral_code_for, referral_record
from tests.config.helpers import assert_problem, bearer
from tests.factories import add_member, make_org

pytestmark = pytest.mark.django_db

TRIAL = "/api/v1/trial/"
REFERRALS = "/api/v1/referrals/"


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="free")


@pytest.fixture
def owner(acme):
    return acme.memberships.get().user


@pytest.fixture
def studio_trial(acme):
    return PlanTrial.objects.create(plan=Plan.objects.get(slug="studio"), days=14, credits=D(500))


def start(client, body, **headers):
    return client.post(TRIAL, data=json.dumps(body), content_type="application/json", **headers)


def test_get_offers_the_trial_then_post_starts_it(client, acme, owner, studio_trial):
    client.force_login(owner)
    body = client.get(TRIAL).json()
    assert body["trial"] is None
    assert body["offers"] == [
        {
            "id": studio_trial.pk,
            "plan": "studio",
            "plan_name": "Studio",
            "days": 14,
            "credits": "500.000",
        }
    ]

    response = start(client, {"plan_trial": studio_trial.pk})

    assert response.status_code == 201, response.content
    started = response.json()
    assert started["state"] == "running" and started["credits_left"] == "500.000"
    assert started["ends_at"].endswith("Z") and started["ended_at"] is None
    body = client.get(TRIAL).json()
    assert body["trial"] == started and body["offers"] == []
    sub = Subscription.objects.get(organization=acme)
    assert sub.status == SubscriptionStatus.TRIALING


def test_a_second_start_or_a_bad_body_is_400_and_writes_nothing(client, acme, owner, studio_trial):
    client.force_login(owner)
    assert_problem(start(client, {}), status=400, code="validation_error")
    assert_problem(start(client, {"plan_trial": "x"}), status=400, code="validation_error")
    assert_problem(start(client, {"plan_trial": 999999}), status=400, code="validation_error")
    assert start(client, {"plan_trial": studio_trial.pk}).status_code == 201
    again = assert_problem(
        start(client, {"plan_trial": studio_trial.pk}), status=400, code="validation_error"
    )
    assert "already had a free trial" in again["detail"]
    assert OrganizationTrial.objects.count() == 1
    assert CreditGrant.objects.filter(source=GrantSource.TRIAL).count() == 1


def test_api_keys_and_non_owners_cannot_start_a_trial(client, owner, studio_trial):
    paid = make_org(slug="paid", plan="starter")
    paid_owner = paid.memberships.get().user
    raw = account_services.api_key_create(organization=paid, name="ci", actor=paid_owner)[1]
    body = assert_problem(
        start(client, {"plan_trial": studio_trial.pk}, **bearer(raw)),
        status=403,
        code="permission_denied",
    )
    assert body["detail"] == api.SESSION_ONLY
    admin = add_member(paid, role=Role.ADMIN)
    client.force_login(admin.user)
    assert_problem(
        start(client, {"plan_trial": studio_trial.pk}), status=403, code="permission_denied"
    )
    assert not OrganizationTrial.objects.exists()


def test_referrals_show_the_link_count_and_credits_earned(client, acme, owner, settings):
    settings.REFERRAL_CREDITS = 200
    client.force_login(owner)
    code = referral_code_for(organization=acme).code
    for slug in ("b1", "b2"):
        assert referral_record(referred=make_org(slug=slug, plan="free"), code=code)

    body = client.get(REFERRALS).json()

    assert body["code"] == code and body["link"].endswith(f"?ref={code}")
    assert body["referrals"] == 2
    assert body["credits_earned"] == "400.000"
    assert body["credits_per_referral"] == 200


def test_referrals_need_a_signed_in_member(client):
    assert client.get(REFERRALS).status_code in (401, 403)
