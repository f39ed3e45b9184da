"""Subscriptions driven by Stripe events: start, renewal, out-of-order delivery, plan change,
past due → free after the grace period, cancellation."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.models import AuditEvent, Subscription
from credits.billing import subscriptions, webhooks
from credits.billing.models import StripeCustomer, StripeEvent
from credits.models import CreditGrant, GrantSource, OverageRecord
from tests.billing import stripe_events as se
from tests.billing.conftest import PRICES, linked_org
from tests.factories import account_of

pytestmark = pytest.mark.django_db

DAY = 86400


@pytest.fixture
def acme(catalog):
    return linked_org("acme", customer="cus_acme")


def plan_grants(org):
    return CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PLAN).order_by(
        "created_at", "pk"
    )


def sub_of(org) -> Subscription:
    return Subscription.objects.select_related("plan").get(organization=org)


def first_invoice(start: int, *, sub="sub_acme", price=PRICES["starter"]):
    return se.subscription_invoice(
        subscription=sub,
        customer="cus_acme",
        price=price,
        period_start=start,
        period_end=start + 30 * DAY,
        billing_reason="subscription_create",
    )


def start_starter(client, start: int | None = None) -> int:
    start = start or int(time.time()) - 5
    session = se.subscription_session("acme", subscription="sub_acme", customer="cus_acme")
    assert se.post(client, se.event("checkout.session.completed", session, created=start)).ok
    return start


# --- Start --------------------------------------------------------------------------------------


def test_checkout_of_a_plan_starts_the_subscription_and_grants_its_credits(client, acme):
    start_starter(client)
    sub = sub_of(acme)
    assert (sub.plan.slug, sub.status) == ("starter", "active")
    assert (sub.stripe_subscription_id, sub.stripe_customer_id) == ("sub_acme", "cus_acme")
    grant = plan_grants(acme).last()
    assert (grant.amount, grant.expires_at) == (D(500), sub.current_period_end)
    assert account_of(acme).overage_limit == D(500)
    assert AuditEvent.objects.filter(action="billing.subscription_activated").count() == 1


@pytest.mark.parametrize("order", ["checkout first", "invoice first"])
def test_out_of_order_checkout_and_first_invoice_end_in_the_same_state(client, acme, order):
    start = int(time.time()) - 5
    checkout = se.event(
        "checkout.session.completed",
        se.subscription_session("acme", subscription="sub_acme", customer="cus_acme"),
        created=start + 2,
    )
    paid = se.event("invoice.paid", first_invoice(start), created=start + 1)
    events = [checkout, paid] if order == "checkout first" else [paid, checkout]
    for evt in events:
        response = se.post(client, evt)
        assert response.status_code == 200, response.json()
    sub = sub_of(acme)
    assert (sub.plan.slug, sub.stripe_subscription_id, sub.status) == (
        "starter",
        "sub_acme",
        "active",
    )
    # One period, one starter grant of 500 (besides the free plan's 50 from signup).
    assert [g.amount for g in plan_grants(acme)] == [D(50), D(500)]
    assert AuditEvent.objects.filter(action="billing.subscription_activated").count() == 1
    assert StripeEvent.objects.filter(status="processed").count() == 2


def test_an_invoice_for_an_unknown_customer_waits_and_is_retried(client, catalog):
    start = int(time.time()) - 5
    invoice = se.subscription_invoice(
        subscription="sub_new",
        customer="cus_new",
        price=PRICES["creator"],
        period_start=start,
        period_end=start + 30 * DAY,
    )
    evt = se.event("invoice.paid", invoice)
    assert se.post(client, evt).status_code == 500
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == "failed" and stored.error.startswith("Waiting:")

    org = linked_org("newco", customer="cus_new")  # the link appears (checkout created it)
    StripeEvent.objects.filter(pk=stored.pk).update(
        last_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert webhooks.retry_failed() == 1
    assert sub_of(org).plan.slug == "creator"
    assert plan_grants(org).last().amount == D(2000)


# --- Renewal ------------------------------------------------------------------------------------


def test_a_renewal_invoice_opens_the_next_period_once(client, acme, mailoutbox):
    start_starter(client)
    sub = sub_of(acme)
    account = account_of(acme)
    old_end = sub.current_period_end
    renewal = se.subscription_invoice(
        subscription="sub_acme",
        customer="cus_acme",
        price=PRICES["starter"],
        period_start=int(old_end.timestamp()),
        period_end=int(old_end.timestamp()) + 30 * DAY,
        billing_reason="subscription_cycle",
    )
    # Both events Stripe sends for one payment, and a redelivery.
    for evt in (
        se.event("invoice.paid", renewal),
        se.event("invoice.payment_succeeded", renewal),
    ):
        assert se.post(client, evt).status_code == 200
        assert se.post(client, evt).status_code == 200
    sub.refresh_from_db()
    assert sub.current_period_start == old_end
    assert [g.amount for g in plan_grants(acme)] == [D(50), D(500), D(500)]
    assert plan_grants(acme).last().expires_at == sub.current_period_end
    assert account.pk == account_of(acme).pk


def test_the_first_invoice_and_prorations_open_no_new_period(client, acme):
    start = start_starter(client)
    proration = first_invoice(start)
    proration["billing_reason"] = "subscription_update"
    proration["lines"]["data"][0]["period"] = {
        "start": start + 10 * DAY,
        "end": start + 30 * DAY,
    }
    assert se.post(client, se.event("invoice.paid", first_invoice(start))).ok
    assert se.post(client, se.event("invoice.paid", proration)).ok
    assert len(plan_grants(acme)) == 2


def test_overage_of_the_closing_period_is_recorded_at_renewal(client, acme):
    from credits import ledger

    start_starter(client)
    account = account_of(acme)
    hold = ledger.hold_create(account=account, amount=D(600), key="job-1")
    ledger.hold_capture(hold=hold)  # 550 funded (50 free + 500 starter) … 50 unfunded
    sub = sub_of(acme)
    end = int(sub.current_period_end.timestamp())
    renewal = se.subscription_invoice(
        subscription="sub_acme",
        customer="cus_acme",
        price=PRICES["starter"],
        period_start=end,
        period_end=end + 30 * DAY,
    )
    assert se.post(client, se.event("invoice.paid", renewal)).ok
    record = OverageRecord.objects.get(account=account)
    assert (record.credits, record.plan_slug, record.amount_usd) == (
        D(50),
        "starter",
        D("1.25"),
    )


# --- Payment failure --------------------------------------------------------------------------


def test_a_failed_renewal_is_past_due_then_free_after_the_grace_period(
    client, acme, fake_gateway, settings, django_capture_on_commit_callbacks, mailoutbox
):
    start_starter(client)
    fake_gateway.subscriptions["sub_acme"] = {"id": "sub_acme", "status": "past_due"}
    sub = sub_of(acme)
    end = int(sub.current_period_end.timestamp())
    failed = se.subscription_invoice(
        subscription="sub_acme",
        customer="cus_acme",
        price=PRICES["starter"],
        period_start=end,
        period_end=end + 30 * DAY,
        status="open",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert se.post(client, se.event("invoice.payment_failed", failed)).ok
        # Stripe's retry fails again: one more email (new attempt), still past due.
        failed["attempt_count"] = 2
        assert se.post(client, se.event("invoice.payment_failed", failed)).ok
    sub.refresh_from_db()
    assert sub.status == "past_due" and sub.plan.slug == "starter"
    since = StripeCustomer.objects.get(organization=acme).past_due_since
    assert since is not None
    assert [m.subject for m in mailoutbox] == ["Payment failed for Acme on GPU Credits"] * 2
    assert "stays active for 7 more day(s)" in " ".join(mailoutbox[0].body.split())

    # Within the grace period nothing happens.
    assert subscriptions.downgrade_past_due(now=since + timedelta(days=6)) == 0
    assert sub_of(acme).plan.slug == "starter"
    # After it: canceled in Stripe, free plan here, owner told.
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriptions.downgrade_past_due(now=since + timedelta(days=7, hours=1)) == 1
    sub = sub_of(acme)
    assert (sub.plan.slug, sub.status, sub.stripe_subscription_id) == ("free", "active", "")
    assert fake_gateway.count("subscription_cancel") == 1
    assert StripeCustomer.objects.get(organization=acme).past_due_since is None
    assert "moved to the free plan" in mailoutbox[-1].subject
    assert subscriptions.downgrade_past_due(now=since + timedelta(days=8)) == 0

    # Stripe's own deletion event arriving afterwards changes nothing.
    deleted = se.subscription_obj(
        subscription="sub_acme", customer="cus_acme", price=PRICES["starter"], status="canceled"
    )
    assert se.post(client, se.event("customer.subscription.deleted", deleted)).ok
    assert sub_of(acme).plan.slug == "free"


def test_a_late_payment_recovers_a_past_due_subscription(client, acme):
    start_starter(client)
    sub = sub_of(acme)
    end = int(sub.current_period_end.timestamp())
    invoice = se.subscription_invoice(
        subscription="sub_acme",
        customer="cus_acme",
        price=PRICES["starter"],
        period_start=end,
        period_end=end + 30 * DAY,
        status="open",
    )
    assert se.post(client, se.event("invoice.payment_failed", invoice)).ok
    assert sub_of(acme).status == "past_due"
    invoice.update(status="paid", amount_paid=900)
    assert se.post(client, se.event("invoice.paid", invoice)).ok
    sub = sub_of(acme)
    assert sub.status == "active"
    assert abs(sub.current_period_start.timestamp() - end) < 1  # the renewed period
    assert StripeCustomer.objects.get(organization=acme).past_due_since is None


# --- Plan change and cancellation --------------------------------------------------------------


def updated(price, *, created, status="active", cancel=False):
    obj = se.subscription_obj(
        subscription="sub_acme",
        customer="cus_acme",
        price=price,
        status=status,
        cancel_at_period_end=cancel,
    )
    return se.event("customer.subscription.updated", obj, created=created)


def test_an_upgrade_tops_the_periods_credits_up_and_a_downgrade_takes_nothing(client, acme):
    start = start_starter(client)
    assert se.post(client, updated(PRICES["studio"], created=start + 10)).ok
    sub = sub_of(acme)
    assert sub.plan.slug == "studio"
    assert [g.amount for g in plan_grants(acme)] == [D(50), D(500), D(9500)]
    assert plan_grants(acme).last().expires_at == sub.current_period_end
    assert account_of(acme).overage_limit == D(10000)

    # Down to creator: nothing taken back; back up to studio: nothing more (already granted).
    assert se.post(client, updated(PRICES["creator"], created=start + 20)).ok
    assert sub_of(acme).plan.slug == "creator"
    assert account_of(acme).overage_limit == D(2000)
    assert se.post(client, updated(PRICES["studio"], created=start + 30)).ok
    assert [g.amount for g in plan_grants(acme)] == [D(50), D(500), D(9500)]


def test_an_older_subscription_state_arriving_late_is_not_applied(client, acme):
    start = start_starter(client)
    newer = updated(PRICES["creator"], created=start + 20)
    older = updated(PRICES["studio"], created=start + 10)
    assert se.post(client, newer).ok
    response = se.post(client, older)
    assert response.ok and "older" in response.json()["note"]
    assert sub_of(acme).plan.slug == "creator"


def test_cancel_at_period_end_then_deletion_moves_to_free(client, acme):
    start = start_starter(client)
    assert se.post(client, updated(PRICES["starter"], created=start + 10, cancel=True)).ok
    assert sub_of(acme).cancel_at_period_end is True
    deleted = se.subscription_obj(
        subscription="sub_acme", customer="cus_acme", price=PRICES["starter"], status="canceled"
    )
    assert se.post(client, se.event("customer.subscription.deleted", deleted)).ok
    sub = sub_of(acme)
    assert (sub.plan.slug, sub.stripe_subscription_id, sub.cancel_at_period_end) == (
        "free",
        "",
        False,
    )
    assert account_of(acme).overage_limit == 0
    # Starter credits already granted stay until their period's end.
    starter_grant = plan_grants(acme).get(amount=D(500))
    assert starter_grant.remaining == D(500)


def test_a_deletion_before_activation_prevents_a_late_activation(client, acme):
    start = int(time.time()) - 5
    deleted = se.subscription_obj(
        subscription="sub_acme", customer="cus_acme", price=PRICES["starter"], status="canceled"
    )
    assert se.post(client, se.event("customer.subscription.deleted", deleted)).ok
    assert se.post(client, se.event("invoice.paid", first_invoice(start))).ok
    assert sub_of(acme).plan.slug == "free"


def test_a_subscription_update_before_activation_waits(client, acme):
    start = int(time.time()) - 5
    early = updated(PRICES["starter"], created=start, cancel=True)
    assert se.post(client, early).status_code == 500
    start_starter(client, start=start - 1)
    StripeEvent.objects.update(last_attempt_at=timezone.now() - timedelta(minutes=5))
    assert webhooks.retry_failed() == 1
    assert sub_of(acme).cancel_at_period_end is True
