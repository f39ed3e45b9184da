"""Auto top-up (once per threshold crossing, off-session, disabled on failure) and low-balance
alerts (once per crossing)."""

from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest
from django.db import connection

from accounts.models import AuditEvent
from config.errors import NotFound, PermissionDenied, ValidationError
from credits import ledger
from credits.billing import topup
from credits.billing.errors import StripeUnavailable
from credits.billing.models import (
    AutoTopUp,
    CreditPack,
    LowBalanceAlert,
    Purchase,
    PurchaseStatus,
    StripeCustomer,
)
from credits.models import CreditGrant, GrantSource
from credits.tasks import billing_balance_watch
from tests.billing import stripe_events as se
from tests.factories import UserFactory, account_of, add_member, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def org(catalog, fake_gateway, owner):
    """acme on the free plan (50 credits), with a Stripe customer and a saved card."""
    org = make_org(slug="acme", plan="free", owner=owner)
    customer = fake_gateway.customer_create(name="Acme", email="", metadata={}, idempotency_key="c")
    fake_gateway.payment_method_attach(payment_method_id="pm_visa", customer_id=customer["id"])
    StripeCustomer.objects.create(organization=org, stripe_customer_id=customer["id"])
    return org


def enable(org, owner, threshold="100", pack="credits-500"):
    return topup.auto_top_up_configure(
        organization=org,
        actor=owner,
        enabled=True,
        threshold_credits=threshold,
        pack=CreditPack.objects.get(slug=pack),
    )


def spend(org, amount, key):
    ledger.hold_capture(hold=ledger.hold_create(account=account_of(org), amount=D(amount), key=key))


def purchase_grants(org):
    return CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PURCHASE)


def test_below_the_threshold_one_pack_is_bought_off_session(
    org, owner, fake_gateway, django_capture_on_commit_callbacks, mailoutbox
):
    enable(org, owner)
    with django_capture_on_commit_callbacks(execute=True):
        billing_balance_watch()  # 50 available < 100
    (params,) = fake_gateway.params("payment_intent_off_session")
    purchase = Purchase.objects.get()
    assert params == {
        "amount": 1000,
        "metadata": {
            "kind": "auto_top_up",
            "organization": "acme",
            "pack": "credits-500",
            "purchase": str(purchase.pk),
        },
    }
    assert purchase.status == PurchaseStatus.PAID and purchase.kind == "auto_top_up"
    assert purchase_grants(org).get().amount == D(500)
    assert account_of(org).available == D(550)
    assert [m.subject for m in mailoutbox] == ["Receipt from GPU Credits: 500 credits"]
    # The webhook for the same PaymentIntent adds nothing.
    intent = fake_gateway.payment_intents[purchase.stripe_payment_intent_id]
    from credits.billing import webhooks

    evt = se.event("payment_intent.succeeded", intent)
    assert (
        webhooks.receive(body=se.body_of(evt), signature=se.sign(se.body_of(evt))).status_code
        == 200
    )
    assert purchase_grants(org).count() == 1


def test_at_most_once_per_crossing(org, owner, fake_gateway):
    enable(org, owner, threshold="100", pack="credits-500")
    billing_balance_watch()
    billing_balance_watch()  # balance 550 now: re-armed, nothing bought
    assert Purchase.objects.count() == 1
    spend(org, 500, "job-1")  # 50 left: a new crossing
    billing_balance_watch()
    billing_balance_watch()
    assert Purchase.objects.count() == 2
    assert purchase_grants(org).count() == 2


def test_a_pack_smaller_than_the_gap_does_not_loop(org, owner, fake_gateway):
    enable(org, owner, threshold="1000", pack="credits-500")
    for _ in range(3):
        billing_balance_watch()  # 50 → 550, still below 1000: no second purchase
    assert Purchase.objects.count() == 1
    assert AutoTopUp.objects.get().armed is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_buy_once(catalog, fake_gateway):
    owner = UserFactory()
    org = make_org(slug="racers", plan="free", owner=owner)
    customer = fake_gateway.customer_create(name="R", email="", metadata={}, idempotency_key="r")
    fake_gateway.payment_method_attach(payment_method_id="pm_visa", customer_id=customer["id"])
    StripeCustomer.objects.create(organization=org, stripe_customer_id=customer["id"])
    enable(org, owner)
    barrier = threading.Barrier(4)

    def check():
        try:
            barrier.wait()
            topup.auto_top_up_check(organization_id=org.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert Purchase.objects.count() == 1
    assert fake_gateway.count("payment_intent_off_session") == 1
    assert purchase_grants(org).count() == 1


def test_a_declined_card_disables_auto_top_up_and_tells_the_owner(
    org, owner, fake_gateway, django_capture_on_commit_callbacks, mailoutbox
):
    enable(org, owner)
    fake_gateway.decline_cards.add("pm_visa")
    with django_capture_on_commit_callbacks(execute=True):
        billing_balance_watch()
        billing_balance_watch()
    purchase = Purchase.objects.get()
    assert purchase.status == PurchaseStatus.FAILED and "declined" in purchase.failure_reason
    config = AutoTopUp.objects.get()
    assert config.enabled is False and "declined" in config.failure_reason
    assert not purchase_grants(org).exists()
    assert fake_gateway.count("payment_intent_off_session") == 1
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [owner.email]
    assert "Auto top-up failed" in mailoutbox[0].subject
    assert AuditEvent.objects.filter(action="billing.auto_top_up_failed").count() == 1


def test_a_failed_payment_intent_webhook_fails_the_top_up(org, owner, fake_gateway, client):
    enable(org, owner)
    fake_gateway.fail_next["payment_intent_off_session"] = StripeUnavailable("timeout")
    billing_balance_watch()
    purchase = Purchase.objects.get()
    assert purchase.status == PurchaseStatus.PENDING  # not sent: retried later
    intent = {
        "id": "pi_async",
        "object": "payment_intent",
        "status": "requires_payment_method",
        "metadata": {"kind": "auto_top_up", "purchase": str(purchase.pk)},
        "last_payment_error": {"message": "Your card has insufficient funds."},
    }
    assert se.post(client, se.event("payment_intent.payment_failed", intent)).ok
    purchase.refresh_from_db()
    assert purchase.status == PurchaseStatus.FAILED
    assert purchase.failure_reason == "Your card has insufficient funds."
    assert AutoTopUp.objects.get().enabled is False


def test_stripe_unreachable_keeps_the_top_up_pending_and_retries_with_the_same_key(
    org, owner, fake_gateway
):
    from datetime import timedelta

    from django.utils import timezone

    enable(org, owner)
    fake_gateway.fail_next["payment_intent_off_session"] = StripeUnavailable("timeout")
    billing_balance_watch()
    assert Purchase.objects.get().status == PurchaseStatus.PENDING
    topup.retry_pending(now=timezone.now() + timedelta(minutes=2))
    purchase = Purchase.objects.get()
    assert purchase.status == PurchaseStatus.PAID
    assert fake_gateway.count("payment_intent_off_session") == 2  # same idempotency key
    assert len(fake_gateway.payment_intents) == 1


def test_enabling_needs_a_manager_and_a_saved_card(catalog, fake_gateway, owner):
    org = make_org(slug="nocard", plan="free", owner=owner)
    pack = CreditPack.objects.get(slug="credits-500")
    with pytest.raises(ValidationError, match="card"):
        topup.auto_top_up_configure(
            organization=org, actor=owner, enabled=True, threshold_credits="10", pack=pack
        )
    member = add_member(org).user
    with pytest.raises(PermissionDenied):
        topup.auto_top_up_configure(
            organization=org, actor=member, enabled=False, threshold_credits="10", pack=pack
        )
    with pytest.raises(NotFound):
        topup.auto_top_up_configure(
            organization=org, actor=UserFactory(), enabled=False, threshold_credits="10", pack=pack
        )
    with pytest.raises(ValidationError):
        topup.auto_top_up_configure(
            organization=org, actor=owner, enabled=False, threshold_credits=1.5, pack=pack
        )


# --- Low-balance alerts -----------------------------------------------------------------------


def test_a_low_balance_alert_is_sent_once_per_crossing(
    org, owner, django_capture_on_commit_callbacks, mailoutbox
):
    topup.low_balance_alert_configure(
        organization=org, actor=owner, enabled=True, threshold_credits="40"
    )
    with django_capture_on_commit_callbacks(execute=True):
        billing_balance_watch()  # 50 ≥ 40: nothing
        spend(org, 20, "job-1")  # 30 < 40
        billing_balance_watch()
        billing_balance_watch()
    assert [m.subject for m in mailoutbox] == ["Low credit balance for Acme on GPU Credits"]
    assert "Available now: 30" in mailoutbox[0].body
    assert LowBalanceAlert.objects.get().armed is False
    ledger.grant_create(account=account_of(org), amount="100", source="promo", idempotency_key="p")
    with django_capture_on_commit_callbacks(execute=True):
        billing_balance_watch()  # back above: re-armed
        spend(org, 100, "job-2")  # 30 again: a second crossing
        billing_balance_watch()
    assert len(mailoutbox) == 2
