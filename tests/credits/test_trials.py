"""Free trials without a card (issue 15): an owner on the free plan starts one trial ever; the
trial's credits (source `trial`) replace the plan's period grant and expire at the trial's end;
the end task returns the organization to free, idempotently; renewal skips trialing ones."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Role, Subscription, SubscriptionStatus
from config.errors import PermissionDenied, ValidationError
from credits import services as credit_services
from credits.models import CreditGrant, GrantSource
from credits.selectors import ledger_drift
from credits.trials import services
from credits.trials.models import OrganizationTrial, PlanTrial
from tests.factories import account_of, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def free_org():
    return make_org(slug="acme", plan="free")


@pytest.fixture
def owner(free_org):
    return free_org.memberships.get().user


@pytest.fixture
def studio_trial():
    make_org(slug="seed", plan="free")  # ensures the default plans exist
    from accounts.models import Plan

    return PlanTrial.objects.create(plan=Plan.objects.get(slug="studio"), days=14, credits=D(500))


def test_owner_starts_a_trial_with_trial_credits_instead_of_plan_credits(
    free_org, owner, studio_trial
):
    now = timezone.now()
    trial = services.trial_start(
        organization=free_org, plan_trial_id=studio_trial.pk, actor=owner, now=now
    )

    sub = Subscription.objects.get(organization=free_org)
    assert sub.plan.slug == "studio" and sub.status == SubscriptionStatus.TRIALING
    assert sub.current_period_end == now + timedelta(days=14) == trial.ends_at
    grant = CreditGrant.objects.get(account=account_of(free_org), source=GrantSource.TRIAL)
    assert grant.amount == D(500) and grant.expires_at == trial.ends_at
    studio_plan_grants = CreditGrant.objects.filter(
        account=account_of(free_org), source=GrantSource.PLAN, reference__startswith="studio"
    )
    assert not studio_plan_grants.exists()
    assert AuditEvent.objects.filter(action="trial.started", organization=free_org).exists()
    assert ledger_drift() == []


def test_a_second_trial_is_refused_and_writes_nothing(free_org, owner, studio_trial):
    now = timezone.now()
    services.trial_start(organization=free_org, plan_trial_id=studio_trial.pk, actor=owner, now=now)
    services.trials_end_due(now=now + timedelta(days=15))
    grants = CreditGrant.objects.count()

    with pytest.raises(ValidationError) as exc:
        services.trial_start(organization=free_org, plan_trial_id=studio_trial.pk, actor=owner)

    assert exc.value.detail == services.ALREADY
    assert CreditGrant.objects.count() == grants
    assert OrganizationTrial.objects.count() == 1


def test_only_owners_of_free_organizations_can_start_a_trial(free_org, owner, studio_trial):
    admin = add_member(free_org, role=Role.ADMIN).user
    with pytest.raises(PermissionDenied):
        services.trial_start(organization=free_org, plan_trial_id=studio_trial.pk, actor=admin)
    paid = make_org(slug="paid", plan="starter")
    with pytest.raises(ValidationError) as exc:
        services.trial_start(
            organization=paid,
            plan_trial_id=studio_trial.pk,
            actor=paid.memberships.get().user,
        )
    assert exc.value.detail == services.FREE_ONLY
    studio_trial.active = False
    studio_trial.save()
    with pytest.raises(ValidationError):
        services.trial_start(organization=free_org, plan_trial_id=studio_trial.pk, actor=owner)
    assert not OrganizationTrial.objects.exists()


def test_the_end_task_returns_to_free_once_and_the_trial_credits_expire(
    free_org, owner, studio_trial
):
    now = timezone.now()
    trial = services.trial_start(
        organization=free_org, plan_trial_id=studio_trial.pk, actor=owner, now=now
    )
    end = trial.ends_at + timedelta(minutes=1)

    assert services.trials_end_due(now=end - timedelta(days=1)) == 0
    assert services.trials_end_due(now=end) == 1
    assert services.trials_end_due(now=end) == 0

    sub = Subscription.objects.get(organization=free_org)
    assert sub.plan.slug == "free" and sub.status == SubscriptionStatus.ACTIVE
    credit_services.grants_expire_due(now=end)
    assert CreditGrant.objects.get(source=GrantSource.TRIAL).remaining == 0
    assert AuditEvent.objects.filter(action="billing.downgraded_to_free").count() == 1
    assert ledger_drift() == []


def test_renewal_skips_a_trialing_subscription(free_org, owner, studio_trial):
    now = timezone.now()
    trial = services.trial_start(
        organization=free_org, plan_trial_id=studio_trial.pk, actor=owner, now=now
    )

    renewed = credit_services.subscriptions_renew_due(now=trial.ends_at + timedelta(hours=1))

    assert renewed == 0
    assert not CreditGrant.objects.filter(source=GrantSource.PLAN, reference__startswith="studio")


def test_the_billing_page_offers_the_trial_to_owners_and_starts_it(
    client, free_org, owner, studio_trial
):
    client.force_login(owner)
    page = client.get(reverse("credits:billing")).content.decode()
    assert "Start a free 14-day trial of Studio" in page
    assert 'data-testid="referral-link"' in page

    response = client.post(reverse("credits:billing_trial"), {"plan_trial": studio_trial.pk})

    assert response.status_code == 303
    assert OrganizationTrial.objects.filter(organization=free_org).exists()
    page = client.get(reverse("credits:billing")).content.decode()
    assert "Trial of Studio until" in page
    again = client.post(reverse("credits:billing_trial"), {"plan_trial": "x"})
    assert again.status_code == 303
    assert OrganizationTrial.objects.count() == 1


def test_members_cannot_start_a_trial(client, free_org, studio_trial):
    member = add_member(free_org, role=Role.ADMIN).user
    client.force_login(member)
    response = client.post(reverse("credits:billing_trial"), {"plan_trial": studio_trial.pk})
    assert response.status_code == 403
    assert not OrganizationTrial.objects.exists()
