"""The issue's Done-when: 32 real threads submitting at once against PostgreSQL — on one API
key with a key budget of exactly N jobs, and by the members of a team with a team budget of
exactly N jobs — accept exactly N and refuse the rest naming the budget; the ledger and the
budgets reconcile afterwards, and again once the jobs are captured or released."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal as D

import pytest

from accounts import services as account_services
from accounts import teams
from accounts.models import Organization, Plan
from config.errors import QuotaExceeded
from credits import services as credit_services
from credits.budgets import services as budgets
from credits.budgets.models import Budget
from credits.budgets.selectors import budgets_reconcile
from credits.selectors import ledger_drift
from generations import services as generations
from generations.models import Job
from tests.credits.test_concurrency import THREADS, run_concurrently
from tests.factories import add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db(transaction=True)

N = 7
PRICE = D(5)


@pytest.fixture
def org():
    org = make_org(slug="acme", plan="studio")
    Plan.objects.update(
        max_concurrent_jobs=None, daily_generation_cap=None, api_rate_limit_per_min=None
    )
    credit_services.organization_grant(
        organization=org, amount="10000", source="adjustment", reason="t", idempotency_key="g"
    )
    make_ai_model("sdxl", credits=str(PRICE))
    return Organization.objects.get(pk=org.pk)


def submit(org, i: int, **caller):
    job, _ = generations.generation_submit(
        organization=Organization.objects.get(pk=org.pk),
        model_slug="sdxl",
        params={"prompt": f"a lighthouse {i}", "seed": i},
        **caller,
    )
    return job


def assert_reconciled() -> None:
    assert ledger_drift() == []
    assert budgets_reconcile() == []


def finish_half(jobs: list[Job]) -> None:
    """Capture every other job's hold and release the rest, then check again."""
    for i, job in enumerate(jobs):
        hold = Job.objects.select_related("hold").get(pk=job.pk).hold
        if i % 2:
            credit_services.hold_release(hold=hold, reason="failed")
        else:
            credit_services.hold_capture(hold=hold)


def test_32_threads_on_one_api_key_with_a_budget_of_n_jobs_get_exactly_n_accepted(org):
    owner = org.memberships.get().user
    key = account_services.api_key_create(organization=org, name="ci", actor=owner)[0]
    budget = budgets.budget_create(
        organization=org, actor=owner, scope="key", api_key=key, period="day", amount=N * PRICE
    )

    results = run_concurrently(THREADS, lambda i: submit(org, i, api_key=key))

    jobs = [r for r in results if isinstance(r, Job)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(jobs) == N, Counter(type(r).__name__ for r in results)
    assert len(refused) == THREADS - N
    assert {r.extra["limit"] for r in refused} == {f"budget:key:{key.prefix}"}
    assert Budget.objects.get(pk=budget.pk).reserved == N * PRICE
    assert Job.objects.count() == N
    assert_reconciled()
    finish_half(jobs)
    budget = Budget.objects.get(pk=budget.pk)
    assert (budget.reserved, budget.used) == (0, ((N + 1) // 2) * PRICE)
    assert_reconciled()


def test_32_threads_of_a_teams_members_with_a_budget_of_n_jobs_get_exactly_n_accepted(org):
    owner = org.memberships.get().user
    team = teams.team_create(organization=org, name="Design", actor=owner)
    members = [add_member(org).user for _ in range(4)]
    for user in members:
        teams.team_member_add(team=team, user=user, actor=owner)
    budget = budgets.budget_create(
        organization=org, actor=owner, scope="team", team=team, period="month", amount=N * PRICE
    )

    results = run_concurrently(THREADS, lambda i: submit(org, i, user=members[i % 4]))

    jobs = [r for r in results if isinstance(r, Job)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(jobs) == N, Counter(type(r).__name__ for r in results)
    assert len(refused) == THREADS - N
    assert {r.extra["limit"] for r in refused} == {"budget:team:design"}
    assert_reconciled()
    finish_half(jobs)
    assert Budget.objects.get(pk=budget.pk).reserved == 0
    assert_reconciled()
