"""charge.refunded: unspent purchased credits are taken back from that purchase's grant; what
was already spent becomes unfunded (negative balance) and the purchase is flagged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.models import AuditEvent
from credits import ledger, selectors
from credits.billing import webhooks
from credits.billing.models import Purchase, PurchaseStatus, StripeEvent
from credits.billing.purchases import refunded_credits
from credits.models import CreditGrant, EntryAllocation, EntryKind, GrantSource, LedgerEntry
from tests.billing import stripe_events as se
from tests.billing.conftest import linked_org
from tests.factories import account_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def bought(client, catalog):
    """acme (free plan, 50 plan credits) bought the 500-credit pack for 10 USD."""
    org = linked_org("acme")
    session = se.pack_session("acme", payment_intent="pi_pack")
    assert se.post(client, se.event("checkout.session.completed", session)).ok
    return org


def spend(org, amount, key):
    hold = ledger.hold_create(account=account_of(org), amount=D(amount), key=key)
    ledger.hold_capture(hold=hold)


def refund_event(amount_refunded, *, charge_id="ch_pack"):
    charge = se.charge_refunded(
        payment_intent="pi_pack", amount=1000, amount_refunded=amount_refunded, charge_id=charge_id
    )
    return se.event("charge.refunded", charge)


def test_a_full_refund_of_an_unspent_pack_takes_its_credits_back(client, bought):
    grant = CreditGrant.objects.get(source=GrantSource.PURCHASE)
    assert se.post(client, refund_event(1000)).ok
    grant.refresh_from_db()
    assert grant.remaining == 0
    account = account_of(bought)
    assert (account.balance, account.available) == (D(50), D(50))  # the free credits untouched
    entry = LedgerEntry.objects.get(kind=EntryKind.ADJUSTMENT, grant=grant)
    assert (entry.amount, entry.balance_delta) == (D(500), D(-500))
    purchase = Purchase.objects.get()
    assert (purchase.status, purchase.credits_clawed_back, purchase.credits_unfunded) == (
        PurchaseStatus.REFUNDED,
        D(500),
        D(0),
    )
    assert not purchase.flagged


def test_spent_credits_of_a_refunded_pack_become_unfunded_and_flagged(client, bought):
    spend(bought, 50, "job-a")  # the free plan credits burn first
    spend(bought, 300, "job-b")  # then 300 of the pack
    assert se.post(client, refund_event(1000)).ok
    grant = CreditGrant.objects.get(source=GrantSource.PURCHASE)
    assert grant.remaining == 0
    account = account_of(bought)
    assert account.balance == D(-300)
    purchase = Purchase.objects.get()
    assert (purchase.credits_clawed_back, purchase.credits_unfunded) == (D(200), D(300))
    assert purchase.flagged and "300" in purchase.flag_reason
    assert AuditEvent.objects.filter(action="billing.refund_unfunded").count() == 1
    entry = LedgerEntry.objects.get(kind=EntryKind.ADJUSTMENT, grant=grant)
    allocations = sorted(
        (a.grant_id or 0, a.amount) for a in EntryAllocation.objects.filter(entry=entry)
    )
    assert allocations == [(0, D(-300)), (grant.pk, D(-200))]
    assert selectors.unfunded_outstanding(account=account) == D(300)


def test_partial_refunds_take_back_their_share_each_once(client, bought):
    first = refund_event(400)  # 40 % → 200 credits
    assert se.post(client, first).ok
    assert se.post(client, first).ok  # redelivery
    assert Purchase.objects.get().credits_clawed_back == D(200)
    assert Purchase.objects.get().status == PurchaseStatus.PARTIALLY_REFUNDED
    assert se.post(client, refund_event(1000)).ok  # the rest, as a new event
    purchase = Purchase.objects.get()
    assert (purchase.credits_clawed_back, purchase.status) == (D(500), "refunded")
    assert LedgerEntry.objects.filter(kind=EntryKind.ADJUSTMENT).count() == 2
    # An older partial-refund event arriving last changes nothing.
    assert se.post(client, refund_event(400)).ok
    assert LedgerEntry.objects.filter(kind=EntryKind.ADJUSTMENT).count() == 2


def test_a_refund_before_its_checkout_event_waits_then_applies(client, catalog):
    org = linked_org("acme")
    early = refund_event(1000)
    assert se.post(client, early).status_code == 500
    stored = StripeEvent.objects.get(event_id=early["id"])
    assert stored.status == "failed" and "No purchase" in stored.error
    session = se.pack_session("acme", payment_intent="pi_pack")
    assert se.post(client, se.event("checkout.session.completed", session)).ok
    StripeEvent.objects.filter(pk=stored.pk).update(
        last_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    assert webhooks.retry_failed() == 1
    assert CreditGrant.objects.get(source=GrantSource.PURCHASE).remaining == 0
    assert account_of(org).balance == D(50)


def test_a_refund_of_an_invoice_payment_is_ignored(client, catalog):
    charge = se.charge_refunded(payment_intent="pi_other", amount=900, amount_refunded=900)
    charge["invoice"] = "in_123"
    response = se.post(client, se.event("charge.refunded", charge))
    assert response.ok and response.json()["status"] == "ignored"


@pytest.mark.parametrize(
    ("refunded", "expected"),
    [(0, D(0)), (1, D("0.500")), (333, D("166.500")), (999, D("499.500")), (1000, D(500))],
)
def test_refunded_credits_are_pro_rata_and_exact(refunded, expected):
    assert refunded_credits(credits=D(500), amount_cents=1000, refunded_cents=refunded) == expected


def test_the_clawback_replays_by_key():
    from tests.factories import make_account

    account = make_account(plan="free", credits="100")
    grant = CreditGrant.objects.get(account=account, source=GrantSource.PURCHASE)
    one = ledger.grant_clawback(grant=grant, amount="30", idempotency_key="k", reason="refund")
    two = ledger.grant_clawback(grant=grant, amount="30", idempotency_key="k", reason="refund")
    assert one.pk == two.pk
    grant.refresh_from_db()
    assert grant.remaining == D(70)
