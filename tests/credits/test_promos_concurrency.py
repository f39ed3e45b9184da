"""The issue's Done-when for promo codes: concurrent redemptions grant once — 32 threads of 32
organizations on a code limited to N redemptions grant exactly N times, and 32 threads of one
organization grant once; the ledger reconciles."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal as D

import pytest

from config.errors import ValidationError
from credits.models import CreditGrant, GrantSource
from credits.promos import services
from credits.promos.models import PromoCode, PromoRedemption
from credits.selectors import ledger_drift
from tests.credits.test_concurrency import THREADS, run_concurrently
from tests.factories import make_org

pytestmark = pytest.mark.django_db(transaction=True)

N = 5


def test_32_organizations_redeeming_a_code_limited_to_n_get_exactly_n_grants():
    orgs = [make_org(slug=f"org{i}") for i in range(THREADS)]
    owners = [org.memberships.get().user for org in orgs]
    PromoCode.objects.create(code="LIMITED", credits=D(50), max_redemptions=N)

    results = run_concurrently(
        THREADS,
        lambda i: services.promo_redeem(organization=orgs[i], code="limited", actor=owners[i]),
    )

    outcome = Counter(type(r).__name__ for r in results)
    assert outcome == {"PromoRedemption": N, "ValidationError": THREADS - N}, results
    assert all(r.detail == services.NOT_VALID for r in results if isinstance(r, ValidationError))
    assert CreditGrant.objects.filter(source=GrantSource.PROMO).count() == N
    assert PromoRedemption.objects.count() == N
    assert PromoCode.objects.get().redemptions_count == N
    assert ledger_drift() == []


def test_32_concurrent_redemptions_by_one_organization_grant_once():
    org = make_org(slug="acme")
    owner = org.memberships.get().user
    PromoCode.objects.create(code="ONCE", credits=D(50))

    results = run_concurrently(
        THREADS, lambda i: services.promo_redeem(organization=org, code="ONCE", actor=owner)
    )

    outcome = Counter(type(r).__name__ for r in results)
    assert outcome == {"PromoRedemption": 1, "ValidationError": THREADS - 1}, results
    assert CreditGrant.objects.filter(source=GrantSource.PROMO).count() == 1
    assert PromoCode.objects.get().redemptions_count == 1
    assert ledger_drift() == []
