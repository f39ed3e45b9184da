"""Period close → one Stripe invoice per organization and period, however often (and however
concurrently) the task runs; its payment settles the overage in the ledger."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.db import connection

from credits import ledger, selectors
from credits.billing import overage
from credits.billing.errors import StripeUnavailable
from credits.billing.models import StripeCustomer
from credits.models import EntryKind, LedgerEntry, OverageRecord, OverageStatus
from credits.services import subscriptions_renew_due
from credits.tasks import billing_invoice_overages
from tests.billing import stripe_events as se
from tests.factories import account_of, make_org

pytestmark = pytest.mark.django_db


def close_period_with_overage(slug="acme", overage_credits=100):
    """A starter org (500 credits/month, overage at 0.025 USD) spends 500 + `overage_credits`,
    then its period closes."""
    org = make_org(slug=slug, plan="starter")
    account = account_of(org)
    hold = ledger.hold_create(account=account, amount=D(500 + overage_credits), key=f"job-{slug}")
    ledger.hold_capture(hold=hold)
    org.subscription.refresh_from_db()
    assert subscriptions_renew_due(now=org.subscription.current_period_end + timedelta(hours=1))
    return org, OverageRecord.objects.get(account=account)


def test_each_overage_record_becomes_one_invoice_even_when_the_task_runs_twice(
    catalog, fake_gateway, django_capture_on_commit_callbacks, mailoutbox
):
    org, record = close_period_with_overage()
    assert (record.credits, record.amount_usd, record.status) == (D(100), D("2.5"), "open")

    with django_capture_on_commit_callbacks(execute=True):
        assert billing_invoice_overages() == 1
        assert billing_invoice_overages() == 0
    assert fake_gateway.count("invoice_create") == 1
    assert fake_gateway.count("invoice_item_create") == 1
    assert fake_gateway.count("invoice_finalize") == 1
    record.refresh_from_db()
    assert record.status == OverageStatus.INVOICED
    invoice = fake_gateway.invoices[record.stripe_invoice_id]
    assert invoice["status"] == "open" and invoice["collection_method"] == "send_invoice"
    assert invoice["metadata"] == {
        "kind": "overage",
        "overage_record": str(record.pk),
        "organization": "acme",
        "period_start": record.period_start.isoformat(),
    }
    (line,) = invoice["lines"]["data"]
    assert line["amount"] == 250
    # The customer was created (idempotently) for an org that had none.
    customer = StripeCustomer.objects.get(organization=org)
    assert invoice["customer"] == customer.stripe_customer_id
    assert [m.subject for m in mailoutbox] == ["Overage invoice for Acme: 2.50 USD"]
    assert "100 credits beyond its plan (starter)" in " ".join(mailoutbox[0].body.split())


def test_several_organizations_get_one_invoice_each(catalog, fake_gateway):
    close_period_with_overage("one", 10)
    close_period_with_overage("two", 20)
    overage.invoice_open_overages()
    overage.invoice_open_overages()
    amounts = sorted(i["amount_due"] for i in fake_gateway.invoices.values())
    assert amounts == [25, 50]
    assert set(OverageRecord.objects.values_list("status", flat=True)) == {"invoiced"}


def test_a_crash_after_creating_the_invoice_reuses_it(catalog, fake_gateway):
    _org, record = close_period_with_overage()
    fake_gateway.fail_next["invoice_item_create"] = StripeUnavailable("timeout")
    assert overage.invoice_open_overages() == 0
    record.refresh_from_db()
    assert record.status == "open" and record.stripe_invoice_id  # the id is kept
    assert overage.invoice_open_overages() == 1
    assert fake_gateway.count("invoice_create") == 1
    assert len(fake_gateway.invoices[record.stripe_invoice_id]["lines"]["data"]) == 1


def test_a_lost_item_response_does_not_add_a_second_line(catalog, fake_gateway):
    """The item was created but the answer was lost (and the key forgotten, > 24 h later):
    the invoice's lines tell, no second item is added."""
    _org, record = close_period_with_overage()
    fake_gateway.fail_next["invoice_finalize"] = StripeUnavailable("timeout")
    assert overage.invoice_open_overages() == 0
    fake_gateway._idempotent.clear()  # Stripe forgot the keys
    assert overage.invoice_open_overages() == 1
    record.refresh_from_db()
    assert fake_gateway.count("invoice_item_create") == 1
    assert len(fake_gateway.invoices[record.stripe_invoice_id]["lines"]["data"]) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_create_one_invoice(catalog, fake_gateway):
    _org, record = close_period_with_overage()
    barrier = threading.Barrier(4)
    errors = []

    def run():
        try:
            barrier.wait()
            overage.invoice_open_overages()
        except Exception as exc:  # collected for the assertion
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert fake_gateway.count("invoice_create") == 1
    assert fake_gateway.count("invoice_item_create") == 1
    record.refresh_from_db()
    assert record.status == "invoiced"


def test_the_invoice_paid_webhook_settles_the_overage_once(client, catalog, fake_gateway):
    org, record = close_period_with_overage()
    overage.invoice_open_overages()
    record.refresh_from_db()
    invoice = {**fake_gateway.invoices[record.stripe_invoice_id], "status": "paid"}
    balance_before = account_of(org).balance
    for event_type in ("invoice.paid", "invoice.payment_succeeded", "invoice.paid"):
        assert se.post(client, se.event(event_type, invoice)).ok
    record.refresh_from_db()
    assert record.status == OverageStatus.PAID
    assert LedgerEntry.objects.filter(kind=EntryKind.OVERAGE).count() == 1
    assert account_of(org).balance == balance_before + D(100)
    assert selectors.overage_billable(account=account_of(org)) == 0


def test_a_customer_with_a_card_is_charged_at_once(catalog, fake_gateway):
    org, record = close_period_with_overage()
    customer = fake_gateway.customer_create(name="Acme", email="", metadata={}, idempotency_key="x")
    fake_gateway.payment_method_attach(payment_method_id="pm_card", customer_id=customer["id"])
    StripeCustomer.objects.create(organization=org, stripe_customer_id=customer["id"])
    assert overage.invoice_open_overages() == 1
    record.refresh_from_db()
    assert record.status == OverageStatus.PAID  # paid synchronously: settled right away
    invoice = fake_gateway.invoices[record.stripe_invoice_id]
    assert invoice["collection_method"] == "charge_automatically"
    assert invoice["default_payment_method"] == "pm_card"


def test_a_declined_card_leaves_the_invoice_open_for_stripes_retries(catalog, fake_gateway):
    org, record = close_period_with_overage()
    customer = fake_gateway.customer_create(name="A", email="", metadata={}, idempotency_key="y")
    fake_gateway.payment_method_attach(payment_method_id="pm_bad", customer_id=customer["id"])
    fake_gateway.decline_cards.add("pm_bad")
    StripeCustomer.objects.create(organization=org, stripe_customer_id=customer["id"])
    assert overage.invoice_open_overages() == 1
    record.refresh_from_db()
    assert record.status == OverageStatus.INVOICED
    assert fake_gateway.invoices[record.stripe_invoice_id]["status"] == "open"


def test_an_overage_worth_less_than_a_cent_is_waived(catalog, fake_gateway):
    _org, record = close_period_with_overage(overage_credits=D("0.1"))  # 0.0025 USD
    assert overage.invoice_open_overages() == 0
    record.refresh_from_db()
    assert record.status == OverageStatus.VOID
    assert fake_gateway.count("invoice_create") == 0


def test_a_voided_invoice_voids_the_record(client, catalog, fake_gateway):
    _org, record = close_period_with_overage()
    overage.invoice_open_overages()
    record.refresh_from_db()
    invoice = {**fake_gateway.invoices[record.stripe_invoice_id], "status": "void"}
    assert se.post(client, se.event("invoice.voided", invoice)).ok
    record.refresh_from_db()
    assert record.status == OverageStatus.VOID
