"""Two concurrent trial starts by one organization: one trial, one grant."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal as D

import pytest

from accounts.models import Plan
from credits.models import CreditGrant, GrantSource
from credits.selectors import ledger_drift
from credits.trials import services
from credits.trials.models import OrganizationTrial, PlanTrial
from tests.credits.test_concurrency import run_concurrently
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_trial_starts_give_one_trial():
    org = make_org(slug="acme", plan="free")
    owner = org.memberships.get().user
    trial = PlanTrial.objects.create(plan=Plan.objects.get(slug="studio"), days=7, credits=D(100))

    results = run_concurrently(
        2, lambda i: services.trial_start(organization=org, plan_trial_id=trial.pk, actor=owner)
    )

    outcome = Counter(type(r).__name__ for r in results)
    assert outcome == {"OrganizationTrial": 1, "ValidationError": 1}, results
    assert OrganizationTrial.objects.count() == 1
    assert CreditGrant.objects.filter(source=GrantSource.TRIAL).count() == 1
    assert ledger_drift() == []


def test_concurrent_referrals_stay_within_the_referrers_monthly_cap(settings):
    from credits.trials import referrals
    from credits.trials.models import Referral

    settings.REFERRALS_PER_MONTH = 1
    referrer = make_org(slug="acme", plan="free")
    code = referrals.referral_code_for(organization=referrer).code
    newcomers = [make_org(slug=f"new{i}", plan="free") for i in range(4)]

    results = run_concurrently(
        4, lambda i: referrals.referral_record(referred=newcomers[i], code=code)
    )

    assert sum(r is not None and not isinstance(r, Exception) for r in results) == 1, results
    assert Referral.objects.count() == 1
    assert CreditGrant.objects.filter(source=GrantSource.REFERRAL).count() == 2
    assert ledger_drift() == []
