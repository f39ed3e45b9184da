"""Budgets per member, team and API key (credits.budgets): checked at acceptance after the plan's
quotas and before credits, reserved with the hold and resolved with it exactly once (capture,
partial capture, release, expiry, cancel), reset per period, alerting once per period. After
every test the ledger (`check_ledger`'s invariants) and the budgets reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
import time_machine
from django.core import mail

from accounts import services as account_services
from accounts import teams
from accounts.models import Organization, Plan
from accounts.webhooks.models import WebhookEvent
from accounts.webhooks.services import webhook_endpoint_create
from config.errors import InsufficientCredits, NotFound, PermissionDenied, QuotaExceeded
from credits import services as credit_services
from credits.budgets import services as budgets
from credits.budgets.models import Budget, HoldBudget
from credits.budgets.selectors import budget_use, budgets_reconcile
from credits.models import CreditHold, HoldStatus
from credits.selectors import ledger_drift
from generations import services as generations
from tests.factories import UserFactory, add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def reconciled():
    """The ledger and the budgets agree after every test."""
    yield
    assert ledger_drift() == []
    assert budgets_reconcile() == []


@pytest.fixture
def org():
    org = make_org(slug="acme", plan="studio")
    Plan.objects.filter(slug="studio").update(max_concurrent_jobs=None, daily_generation_cap=None)
    credit_services.organization_grant(
        organization=org, amount="10000", source="adjustment", reason="t", idempotency_key="g"
    )
    return Organization.objects.get(pk=org.pk)


@pytest.fixture
def owner(org):
    return org.memberships.get().user


@pytest.fixture
def member(org):
    return add_member(org).user


@pytest.fixture
def key(org, owner):
    return account_services.api_key_create(organization=org, name="ci", actor=owner)[0]


def authorize(org, *, key_name: str, amount="5", now=None, **kwargs) -> CreditHold:
    fresh = Organization.objects.get(pk=org.pk)
    return credit_services.spend_authorize(
        organization=fresh, amount=amount, key=key_name, now=now, **kwargs
    )


def budget(org, owner, **fields) -> Budget:
    fields.setdefault("period", "day")
    return budgets.budget_create(organization=org, actor=owner, **fields)


def state(b: Budget) -> tuple[D, D]:
    b = Budget.objects.get(pk=b.pk)
    use = budget_use(budget=b)
    return use.used, use.reserved


# --- Which budgets apply, and the refusal that names one ----------------------------------------


def test_a_key_budget_refuses_the_job_that_does_not_fit_and_names_the_key(org, owner, key):
    b = budget(org, owner, scope="key", api_key=key, amount="12")
    authorize(org, key_name="1", api_key=key)
    authorize(org, key_name="2", api_key=key)
    holds_before = CreditHold.objects.count()

    with pytest.raises(QuotaExceeded) as info:
        authorize(org, key_name="3", api_key=key)

    error = info.value
    assert (error.code, error.status_code) == ("quota_exceeded", 429)
    assert error.extra["limit"] == f"budget:key:{key.prefix}"
    assert (error.extra["limit_value"], error.extra["used"], error.extra["reserved"]) == (
        "12.000",
        "0.000",
        "10.000",
    )
    assert error.extra["resets_at"].endswith("T00:00:00Z")
    assert "ci" in error.detail and "12" in error.detail
    assert CreditHold.objects.count() == holds_before  # the refusal wrote nothing
    assert state(b) == (D(0), D(10))
    # A job that fits in what is left is still accepted.
    authorize(org, key_name="4", api_key=key, amount="2")
    assert state(b) == (D(0), D(12))


def test_the_member_budget_applies_to_the_member_and_to_the_keys_they_created(
    org, owner, member, key
):
    b = budget(org, owner, scope="member", user=owner, amount="10")
    authorize(org, key_name="web", user=owner)  # the owner in the browser
    authorize(org, key_name="api", api_key=key)  # a key the owner created
    authorize(org, key_name="other", user=member)  # another member: not this budget
    with pytest.raises(QuotaExceeded) as info:
        authorize(org, key_name="over", user=owner)
    assert info.value.extra["limit"] == f"budget:member:{owner.pk}"  # an id, never an email
    assert state(b) == (D(0), D(10))


def test_a_team_budget_is_shared_by_its_members_only(org, owner, member):
    team = teams.team_create(organization=org, name="Design", actor=owner)
    teams.team_member_add(team=team, user=owner, actor=owner)
    teams.team_member_add(team=team, user=member, actor=owner)
    outsider = add_member(org).user
    b = budget(org, owner, scope="team", team=team, amount="10", period="week")
    authorize(org, key_name="a", user=owner)
    authorize(org, key_name="b", user=member)
    authorize(org, key_name="c", user=outsider)
    with pytest.raises(QuotaExceeded) as info:
        authorize(org, key_name="d", user=member)
    assert info.value.extra["limit"] == "budget:team:design"
    assert state(b) == (D(0), D(10))


def test_every_applicable_budget_must_fit_and_a_refusal_reserves_on_none(org, owner, key):
    team = teams.team_create(organization=org, name="Ops", actor=owner)
    teams.team_member_add(team=team, user=owner, actor=owner)
    on_key = budget(org, owner, scope="key", api_key=key, amount="100")
    on_member = budget(org, owner, scope="member", user=owner, amount="100")
    on_team = budget(org, owner, scope="team", team=team, amount="7")
    authorize(org, key_name="1", api_key=key)
    with pytest.raises(QuotaExceeded) as info:
        authorize(org, key_name="2", api_key=key)
    assert info.value.extra["limit"] == "budget:team:ops"
    assert [state(b) for b in (on_key, on_member, on_team)] == [(D(0), D(5))] * 3


def test_budgets_come_after_the_plans_quotas_and_before_credits(org, owner, key):
    budget(org, owner, scope="key", api_key=key, amount="5")
    Plan.objects.filter(slug="studio").update(max_concurrent_jobs=1)
    authorize(org, key_name="running", api_key=key)
    with pytest.raises(QuotaExceeded) as info:
        authorize(org, key_name="next", api_key=key)
    assert info.value.extra["limit"] == "concurrency"  # the plan's quota comes first

    Plan.objects.filter(slug="studio").update(max_concurrent_jobs=None)
    poor = make_org(slug="poor", plan="free")
    Plan.objects.filter(slug="free").update(max_concurrent_jobs=None)
    poor_owner = poor.memberships.get().user
    roomy = budget(poor, poor_owner, scope="member", user=poor_owner, amount="1000")
    with pytest.raises(InsufficientCredits) as info:
        authorize(poor, key_name="big", amount="999", user=poor_owner)
    assert info.value.extra["limit"] == "credits"
    assert state(roomy) == (D(0), D(0))  # the credits refusal rolled the reservation back


# --- Resolved with the hold, exactly once ------------------------------------------------------


def test_capture_counts_what_was_charged_and_a_replay_counts_nothing(org, owner, key):
    b = budget(org, owner, scope="key", api_key=key, amount="100")
    hold = authorize(org, key_name="1", api_key=key, amount="10")
    credit_services.hold_capture(hold=hold, amount="4")  # actual below the hold
    credit_services.hold_capture(hold=hold, amount="4")  # a replay
    assert state(b) == (D(4), D(0))
    full = authorize(org, key_name="2", api_key=key, amount="10")
    credit_services.hold_capture(hold=full)
    credit_services.hold_capture(hold=full)
    assert state(b) == (D(14), D(0))
    assert HoldBudget.objects.filter(resolved_at__isnull=True).count() == 0


def test_release_expiry_and_cancel_give_the_budget_back(org, owner, member):
    model = make_ai_model("sdxl", credits="5")
    assert model.pool_id
    b = budget(org, owner, scope="member", user=member, amount="15")
    released = authorize(org, key_name="1", user=member)
    stale = authorize(org, key_name="2", user=member, now=datetime.now(UTC) - timedelta(days=2))
    job, _ = generations.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": "a cat"}, user=member
    )
    assert state(b) == (D(0), D(15))

    credit_services.hold_release(hold=released, reason="worker lost")
    credit_services.hold_release(hold=released, reason="worker lost")  # replay
    assert credit_services.holds_release_stale() == 1
    generations.generation_cancel(job=job, actor=member)

    assert state(b) == (D(0), D(0))
    assert CreditHold.objects.get(pk=stale.pk).status == HoldStatus.EXPIRED


def test_a_fair_use_unlimited_plan_counts_the_list_price(owner):
    org = make_org(slug="bigco", plan="unlimited")
    Plan.objects.filter(slug="unlimited").update(
        max_concurrent_jobs=None, daily_generation_cap=None
    )
    boss = org.memberships.get().user
    b = budget(org, boss, scope="member", user=boss, amount="8")
    hold = authorize(org, key_name="1", user=boss, amount="5")
    assert hold.amount == 0  # the plan pays nothing…
    with pytest.raises(QuotaExceeded):
        authorize(org, key_name="2", user=boss, amount="5")  # …but the budget counts 5
    credit_services.hold_capture(hold=hold)
    assert state(b) == (D(5), D(0))


# --- Periods -------------------------------------------------------------------------------------


def test_a_daily_budget_resets_at_midnight_utc_and_a_total_never(org, owner, key, member):
    day = budget(org, owner, scope="key", api_key=key, amount="10")
    total = budget(org, owner, scope="member", user=member, amount="10", period="total")
    assert total.window_start.year == 1970
    with time_machine.travel(datetime(2026, 3, 2, 23, 0, tzinfo=UTC), tick=False):
        for i in range(2):
            credit_services.hold_capture(hold=authorize(org, key_name=f"d{i}", api_key=key))
            credit_services.hold_capture(hold=authorize(org, key_name=f"t{i}", user=member))
        with pytest.raises(QuotaExceeded) as info:
            authorize(org, key_name="late", api_key=key)
        assert info.value.extra["resets_at"] == "2026-03-03T00:00:00Z"
        assert budgets_reconcile() == []
    with time_machine.travel(datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC), tick=False):
        assert state(day) == (D(0), D(0))  # a new day, before anything touched the row
        credit_services.hold_capture(hold=authorize(org, key_name="next", api_key=key))
        assert state(day) == (D(5), D(0))
        with pytest.raises(QuotaExceeded) as info:
            authorize(org, key_name="t-next", user=member)
        assert "resets_at" not in info.value.extra  # a hard total
        assert budgets_reconcile() == []


def test_a_hold_placed_yesterday_and_captured_today_counts_today(org, owner, key):
    b = budget(org, owner, scope="key", api_key=key, amount="10")
    with time_machine.travel(datetime(2026, 3, 2, 23, 59, tzinfo=UTC), tick=False):
        hold = authorize(org, key_name="1", api_key=key)
        credit_services.hold_capture(hold=authorize(org, key_name="0", api_key=key))
    with time_machine.travel(datetime(2026, 3, 3, 0, 1, tzinfo=UTC), tick=False):
        credit_services.hold_capture(hold=hold)
        assert state(b) == (D(5), D(0))
        assert budgets_reconcile() == []


# --- The soft threshold -------------------------------------------------------------------


def test_the_soft_threshold_emails_owners_and_admins_and_sends_a_webhook_once_a_period(
    org, owner, key, django_capture_on_commit_callbacks
):
    admin = add_member(org, role="admin").user
    webhook_endpoint_create(
        organization=org,
        url="https://example.com/hook",
        event_types=["budget.threshold"],
        actor=owner,
    )
    budget(org, owner, scope="key", api_key=key, amount="20", alert_percent=50)
    with django_capture_on_commit_callbacks(execute=True):
        authorize(org, key_name="1", api_key=key)  # 25 %
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        authorize(org, key_name="2", api_key=key)  # 50 %: alert
        authorize(org, key_name="3", api_key=key)  # 75 %: already alerted this period
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {owner.email, admin.email}
    assert "50%" in mail.outbox[0].subject
    event = WebhookEvent.objects.get(type="budget.threshold")
    assert event.payload["limit"] == f"budget:key:{key.prefix}"


# --- Managing budgets ---------------------------------------------------------------------


def test_only_owners_and_admins_manage_budgets_and_teams(org, owner, member):
    with pytest.raises(PermissionDenied):
        budget(org, member, scope="member", user=member, amount="5")
    with pytest.raises(PermissionDenied):
        teams.team_create(organization=org, name="Mine", actor=member)
    stranger = UserFactory()
    with pytest.raises(NotFound):
        teams.team_create(organization=org, name="Theirs", actor=stranger)
    assert Budget.objects.count() == 0


def test_a_budget_cannot_target_another_tenants_team_or_key(org, owner):
    other = make_org(slug="globex", plan="studio")
    their_owner = other.memberships.get().user
    their_team = teams.team_create(organization=other, name="X", actor=their_owner)
    their_key = account_services.api_key_create(organization=other, name="k", actor=their_owner)[0]
    with pytest.raises(Exception) as info:
        budget(org, owner, scope="team", team=their_team, amount="5")
    assert info.value.code == "validation_error"
    with pytest.raises(Exception) as info:
        budget(org, owner, scope="key", api_key=their_key, amount="5")
    assert info.value.code == "validation_error"
    with pytest.raises(Exception) as info:
        budget(org, owner, scope="member", user=their_owner, amount="5")
    assert info.value.code == "validation_error"


def test_edits_and_deletes_are_audited_and_deleting_frees_the_jobs(org, owner, key):
    b = budget(org, owner, scope="key", api_key=key, amount="5")
    hold = authorize(org, key_name="1", api_key=key)
    b = budgets.budget_update(budget=b, actor=owner, amount="10", alert_percent=80)
    assert (b.amount, b.alert_percent) == (D(10), 80)
    authorize(org, key_name="2", api_key=key)
    budgets.budget_delete(budget=b, actor=owner)
    authorize(org, key_name="3", api_key=key)  # no budget any more
    credit_services.hold_capture(hold=hold)  # its reservation went with the budget
    actions = list(
        org.audit_events.filter(action__startswith="budget.").values_list("action", flat=True)
    )
    assert sorted(actions) == ["budget.created", "budget.deleted", "budget.updated"]
