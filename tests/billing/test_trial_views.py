"""The billing page of an organization on a free trial (issue 15): its status, "Subscribe to
<plan>" through Checkout (the paid subscription converts the trial), "End trial now", and the
plan changes and cancellation refused while trialing."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, Role, Subscription, SubscriptionStatus
from credits.selectors import ledger_drift
from credits.trials import services
from credits.trials.models import OrganizationTrial, PlanTrial
from tests.billing import stripe_events as se
from tests.billing.conftest import linked_org
from tests.factories import add_member

pytestmark = pytest.mark.django_db

BILLING = "/credits/billing/"


@pytest.fixture
def trialing(catalog):
    """acme (a Stripe customer already) on a running 14-day Studio trial."""
    from accounts.models import Plan

    org = linked_org("acme", customer="cus_acme")
    plan_trial = PlanTrial.objects.create(
        plan=Plan.objects.get(slug="studio"), days=14, credits=D(500)
    )
    owner = org.memberships.get().user
    services.trial_start(organization=org, plan_trial_id=plan_trial.pk, actor=owner)
    return org


@pytest.fixture
def owner(trialing):
    return trialing.memberships.get().user


def _login(client, user):
    client.force_login(user)
    client.get(reverse("dashboard"))
    return client


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def sub_of(org) -> Subscription:
    return Subscription.objects.select_related("plan").get(organization=org)


def test_the_page_shows_the_trial_and_offers_only_subscribe_and_end(client, trialing, owner):
    page = _login(client, owner).get(BILLING).content.decode()

    assert "Trial of Studio until" in page and "500 credits left" in page
    assert 'data-testid="trial-subscribe"' in page and "Subscribe to Studio" in page
    assert 'data-testid="trial-end"' in page
    assert 'data-testid="plan-starter"' not in page  # no plan changes while trialing
    assert 'data-testid="billing-cancel"' not in page


def test_admins_can_subscribe_but_not_end_the_trial(client, trialing):
    admin = add_member(trialing, role=Role.ADMIN).user
    page = _login(client, admin).get(BILLING).content.decode()
    assert 'data-testid="trial-subscribe"' in page
    assert 'data-testid="trial-end"' not in page

    response = client.post(reverse("credits:billing_trial_end"))

    assert response.status_code == 403
    assert OrganizationTrial.objects.get().ended_at is None


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("credits:billing_plan", {"plan": "starter"}),
        ("credits:billing_cancel", {}),
        ("credits:billing_resume", {}),
    ],
)
def test_plan_changes_and_cancel_are_refused_while_trialing(
    client, trialing, owner, fake_gateway, url, data
):
    _login(client, owner)
    audits = AuditEvent.objects.count()

    response = client.post(reverse(url), data)

    assert response.status_code == 303
    assert any("free trial" in m for m in _messages(response))
    assert not fake_gateway.calls
    sub = sub_of(trialing)
    assert (sub.plan.slug, sub.status) == ("studio", SubscriptionStatus.TRIALING)
    assert AuditEvent.objects.count() == audits


def test_subscribe_goes_to_checkout_and_the_paid_subscription_converts_the_trial(
    client, trialing, owner, fake_gateway
):
    response = _login(client, owner).post(reverse("credits:billing_plan"), {"plan": "studio"})

    assert response.status_code == 303
    assert response["Location"].startswith("https://checkout.stripe.test/")
    assert fake_gateway.count("checkout_session_create") == 1

    session = se.subscription_session(
        "acme", plan="studio", subscription="sub_acme", customer="cus_acme"
    )
    event = se.event("checkout.session.completed", session, created=int(time.time()))
    assert se.post(client, event).ok

    sub = sub_of(trialing)
    assert (sub.plan.slug, sub.status) == ("studio", SubscriptionStatus.ACTIVE)
    assert sub.stripe_subscription_id == "sub_acme"
    trial = OrganizationTrial.objects.get()
    assert trial.ended_at is not None
    assert AuditEvent.objects.filter(action="trial.converted").count() == 1
    # The trial's end date passes: the paid subscription is never downgraded.
    assert services.trials_end_due(now=trial.ends_at + timedelta(minutes=1)) == 0
    assert sub_of(trialing).plan.slug == "studio"
    assert not AuditEvent.objects.filter(action="billing.downgraded_to_free").exists()
    assert ledger_drift() == []


def test_end_trial_now_returns_to_free_once(client, trialing, owner):
    response = _login(client, owner).post(reverse("credits:billing_trial_end"))

    assert response.status_code == 303
    sub = sub_of(trialing)
    assert (sub.plan.slug, sub.status) == ("free", SubscriptionStatus.ACTIVE)
    assert OrganizationTrial.objects.get().ended_at is not None
    again = client.post(reverse("credits:billing_trial_end"))
    assert again.status_code == 303
    assert AuditEvent.objects.filter(action="billing.downgraded_to_free").count() == 1
    assert AuditEvent.objects.filter(action="trial.ended").count() == 1
    assert services.trials_end_due(now=timezone.now() + timedelta(days=30)) == 0
    page = client.get(BILLING).content.decode()
    assert "ended on" in page and 'data-testid="trial-end"' not in page
    assert ledger_drift() == []


def test_ending_without_a_trial_is_a_message_not_an_error(client, catalog):
    org = linked_org("plain")
    response = _login(client, org.memberships.get().user).post(reverse("credits:billing_trial_end"))
    assert response.status_code == 303
    assert services.NOT_TRIALING in _messages(response)
