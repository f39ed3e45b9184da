"""Promo codes (issue 15): a redemption grants the code's credits (source `promo`) once per
organization; a code that is unknown, inactive, expired, not yet valid or used up is "not
valid" (one message); wrong codes are throttled per organization; the API, the billing page's
form and the admin."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.models import AuditEvent, Role
from config.errors import PermissionDenied, RateLimited, ValidationError
from credits.models import CreditGrant, GrantSource
from credits.promos import services, throttle
from credits.promos.models import PromoCode, PromoRedemption
from credits.selectors import ledger_drift
from tests.config.helpers import assert_problem, bearer
from tests.factories import add_member, make_org

pytestmark = pytest.mark.django_db

REDEEM = "/api/v1/promo-codes/redeem/"


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def owner(acme):
    return acme.memberships.get().user


def make_code(code="LAUNCH500", credits="500", **fields) -> PromoCode:
    return PromoCode.objects.create(code=code, credits=D(credits), **fields)


def promo_grants(org):
    return CreditGrant.objects.filter(account__organization=org, source=GrantSource.PROMO)


def redeem(org, user, code):
    return services.promo_redeem(organization=org, code=code, actor=user)


def test_a_redemption_grants_the_codes_credits_once_with_the_expiry_and_an_audit_row(acme, owner):
    make_code(grant_days=30)
    redemption = redeem(acme, owner, "  launch500 ")  # any case, spaces trimmed

    grant = promo_grants(acme).get()
    assert grant.amount == D(500) and grant.remaining == D(500)
    assert redemption.grant == grant
    assert abs(grant.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert PromoCode.objects.get().redemptions_count == 1
    assert AuditEvent.objects.filter(action="promo.redeemed", organization=acme).count() == 1
    assert ledger_drift() == []


def test_the_grant_expires_at_the_earlier_of_the_days_and_the_date(acme, owner):
    date = timezone.now() + timedelta(days=3)
    make_code(grant_days=30, grant_expires_at=date)
    assert redeem(acme, owner, "LAUNCH500").grant.expires_at == date


def test_the_same_code_twice_grants_once(acme, owner):
    make_code()
    redeem(acme, owner, "LAUNCH500")
    with pytest.raises(ValidationError, match="already redeemed"):
        redeem(acme, owner, "launch500")
    assert promo_grants(acme).count() == 1
    assert PromoCode.objects.get().redemptions_count == 1


def test_a_code_allowing_two_per_organization_grants_twice_then_refuses(acme, owner):
    make_code(max_per_organization=2)
    redeem(acme, owner, "LAUNCH500")
    redeem(acme, owner, "LAUNCH500")
    with pytest.raises(ValidationError, match="already redeemed"):
        redeem(acme, owner, "LAUNCH500")
    assert list(PromoRedemption.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]


def test_a_code_past_its_limit_is_not_valid_and_grants_nothing_more(acme, owner):
    make_code(max_redemptions=1)
    other = make_org(slug="globex")
    redeem(other, other.memberships.get().user, "LAUNCH500")
    with pytest.raises(ValidationError) as caught:
        redeem(acme, owner, "LAUNCH500")
    assert caught.value.detail == services.NOT_VALID
    assert promo_grants(acme).count() == 0
    assert PromoCode.objects.get().redemptions_count == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"valid_until": timezone.now() - timedelta(minutes=1)},
        {"valid_from": timezone.now() + timedelta(days=1)},
        {"active": False},
        {"grant_expires_at": timezone.now() - timedelta(minutes=1)},
    ],
    ids=["expired", "not-yet-valid", "inactive", "grant-date-past"],
)
def test_a_code_outside_its_window_or_inactive_is_not_valid_like_an_unknown_one(
    acme, owner, fields
):
    make_code(**fields)
    with pytest.raises(ValidationError) as known:
        redeem(acme, owner, "LAUNCH500")
    with pytest.raises(ValidationError) as unknown:
        redeem(acme, owner, "NOSUCHCODE")
    assert known.value.detail == unknown.value.detail == services.NOT_VALID
    assert promo_grants(acme).count() == 0
    assert PromoCode.objects.get().redemptions_count == 0
    assert PromoRedemption.objects.count() == 0


def test_members_cannot_redeem(acme):
    make_code()
    member = add_member(acme, role=Role.MEMBER).user
    with pytest.raises(PermissionDenied):
        redeem(acme, member, "LAUNCH500")
    assert promo_grants(acme).count() == 0


def test_wrong_codes_lock_the_organization_out_even_for_a_right_code(acme, owner):
    make_code()
    for i in range(throttle.MAX_FAILURES - 1):
        with pytest.raises(ValidationError):
            redeem(acme, owner, f"GUESS{i}")
    with pytest.raises(RateLimited) as locked:
        redeem(acme, owner, "GUESS-LAST")
    assert "Too many attempts" in locked.value.detail
    with pytest.raises(RateLimited):
        redeem(acme, owner, "LAUNCH500")
    assert promo_grants(acme).count() == 0
    # another organization is not affected
    globex = make_org(slug="globex")
    redeem(globex, globex.memberships.get().user, "LAUNCH500")


# --- API ------------------------------------------------------------------------------------


def post(client, body, **headers):
    return client.post(REDEEM, data=json.dumps(body), content_type="application/json", **headers)


def test_api_redeems_with_an_api_key_and_answers_201(client, acme, owner):
    make_code(grant_days=10)
    raw = account_services.api_key_create(organization=acme, name="ci", actor=owner)[1]
    response = post(client, {"code": "launch500"}, **bearer(raw))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["code"] == "LAUNCH500" and body["credits"] == "500.000"
    assert body["expires_at"].endswith("Z")
    again = assert_problem(
        post(client, {"code": "LAUNCH500"}, **bearer(raw)), status=400, code="validation_error"
    )
    assert "already redeemed" in again["detail"]
    assert promo_grants(acme).count() == 1


def test_api_wrong_code_says_not_valid_without_echoing_it(client, acme, owner):
    client.force_login(owner)
    body = assert_problem(
        post(client, {"code": "SECRET-GUESS"}), status=400, code="validation_error"
    )
    assert body["detail"] == services.NOT_VALID
    assert "SECRET-GUESS" not in json.dumps(body)
    assert_problem(post(client, {}), status=400, code="validation_error")


def test_api_signed_in_member_is_refused(client, acme):
    make_code()
    member = add_member(acme, role=Role.MEMBER).user
    client.force_login(member)
    assert_problem(post(client, {"code": "LAUNCH500"}), status=403, code="permission_denied")


# --- Billing page and admin -----------------------------------------------------------------


def test_billing_page_form_redeems_and_shows_the_result(client, acme, owner):
    make_code()
    client.force_login(owner)
    page = client.get(reverse("credits:billing"))
    assert b'data-testid="promo-form"' in page.content
    response = client.post(reverse("credits:billing_promo"), {"code": "launch500"}, follow=True)
    assert "Code redeemed: 500 credits added" in response.content.decode()
    response = client.post(reverse("credits:billing_promo"), {"code": "nope"}, follow=True)
    assert services.NOT_VALID in response.content.decode()
    assert promo_grants(acme).count() == 1


def test_billing_page_hides_the_form_from_members_and_refuses_their_post(client, acme):
    make_code()
    member = add_member(acme, role=Role.MEMBER).user
    client.force_login(member)
    assert b'data-testid="promo-form"' not in client.get(reverse("credits:billing")).content
    assert client.post(reverse("credits:billing_promo"), {"code": "LAUNCH500"}).status_code == 403
    assert promo_grants(acme).count() == 0


def test_admin_creates_codes_upper_case_and_shows_redemptions(admin_client, acme, owner):
    url = reverse("admin:credits_promocode_add")
    response = admin_client.post(
        url,
        {
            "code": "welcome",
            "credits": "100",
            "max_per_organization": "1",
            "active": "on",
            "redemptions-TOTAL_FORMS": "0",
            "redemptions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content
    code = PromoCode.objects.get()
    assert code.code == "WELCOME"
    redeem(acme, owner, "welcome")
    page = admin_client.get(reverse("admin:credits_promocode_change", args=[code.pk]))
    assert page.status_code == 200 and b"acme" in page.content.lower()
    duplicate = admin_client.post(
        url,
        {
            "code": "Welcome",
            "credits": "5",
            "max_per_organization": "1",
            "redemptions-TOTAL_FORMS": "0",
            "redemptions-INITIAL_FORMS": "0",
        },
    )
    assert duplicate.status_code == 200 and PromoCode.objects.count() == 1
