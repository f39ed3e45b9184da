"""Referral credits (issue 15): a sign-up through a referral code credits both organizations
once (source `referral`); self-referrals, repeats and referrers over their monthly cap are
refused and write nothing."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from accounts.models import AuditEvent
from credits.models import CreditGrant, GrantSource
from credits.selectors import ledger_drift
from credits.trials import referrals
from credits.trials.models import Referral
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def referrer():
    return make_org(slug="acme", plan="free")


@pytest.fixture
def code(referrer):
    return referrals.referral_code_for(organization=referrer).code


def referral_grants(org):
    return CreditGrant.objects.filter(account=account_of(org), source=GrantSource.REFERRAL)


def test_a_referred_sign_up_credits_both_organizations_once(referrer, code, settings):
    settings.REFERRAL_CREDITS = 100
    newcomer = make_org(slug="newco", plan="free")

    referral = referrals.referral_record(referred=newcomer, code=code.lower())
    again = referrals.referral_record(referred=newcomer, code=code)

    assert referral is not None and again is None
    assert [g.amount for g in referral_grants(referrer)] == [D(100)]
    assert [g.amount for g in referral_grants(newcomer)] == [D(100)]
    assert AuditEvent.objects.filter(action="referral.credited").count() == 2
    assert ledger_drift() == []


def test_the_code_is_stable_per_organization(referrer, code):
    assert referrals.referral_code_for(organization=referrer).code == code


def test_self_referral_is_refused(referrer, code):
    assert referrals.referral_record(referred=referrer, code=code) is None
    second = make_org(slug="acme2", plan="free", owner=referrer.memberships.get().user)
    assert referrals.referral_record(referred=second, code=code) is None
    assert not Referral.objects.exists()
    assert not CreditGrant.objects.filter(source=GrantSource.REFERRAL).exists()


def test_unknown_codes_are_ignored():
    newcomer = make_org(slug="newco", plan="free")
    assert referrals.referral_record(referred=newcomer, code="NOPE") is None
    assert referrals.referral_record(referred=newcomer, code="  ") is None
    assert not Referral.objects.exists()


def test_the_monthly_cap_per_referrer_is_enforced(referrer, code, settings):
    settings.REFERRALS_PER_MONTH = 2
    newcomers = [make_org(slug=f"new{i}", plan="free") for i in range(3)]

    results = [referrals.referral_record(referred=org, code=code) for org in newcomers]

    assert [r is not None for r in results] == [True, True, False]
    assert referral_grants(referrer).count() == 2
    assert not referral_grants(newcomers[2]).exists()


def test_signing_up_through_a_referral_link_credits_both(client, referrer, code, settings):
    from django.core import mail
    from django.urls import reverse

    from tests.accounts.test_views import PASSPHRASE, _signup_data, _signup_link

    page = client.get(reverse("signup") + f"?ref={code}")
    assert f'value="{code}"' in page.content.decode()
    link = _signup_link(client, email="new@example.com", ref=code)
    response = client.post(link, {"password1": PASSPHRASE, "password2": PASSPHRASE})

    assert response.status_code == 302
    referral = Referral.objects.get()
    assert (
        referral.referrer == referrer
        and referral.referred.name == _signup_data()["organization_name"]
    )
    assert referral_grants(referral.referred).get().amount == settings.REFERRAL_CREDITS
    assert len(mail.outbox) == 1
