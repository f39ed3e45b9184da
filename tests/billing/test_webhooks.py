"""POST /stripe/webhook/: signature, store-first, exactly one effect per event, clear outcomes
for everything that can't be applied."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal as D

import pytest
import requests
from django.db import connection

from credits import tasks
from credits.billing import purchases, webhooks
from credits.billing.models import (
    Purchase,
    PurchaseStatus,
    StripeEvent,
    StripeEventStatus,
    StripeWebhookRefusal,
)
from credits.models import CreditGrant, GrantSource, LedgerEntry
from tests.billing import stripe_events as se
from tests.billing.conftest import linked_org
from tests.factories import account_of

pytestmark = pytest.mark.django_db


def purchase_grants(org):
    return CreditGrant.objects.filter(account=account_of(org), source=GrantSource.PURCHASE)


@pytest.fixture
def acme(catalog):
    return linked_org("acme")


# --- A pack purchase ----------------------------------------------------------------------------


def test_a_paid_pack_checkout_grants_its_credits_once(
    client, acme, django_capture_on_commit_callbacks, mailoutbox
):
    session = se.pack_session("acme", customer="cus_acme")
    evt = se.event("checkout.session.completed", session)
    with django_capture_on_commit_callbacks(execute=True):
        response = se.post(client, evt)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"

    grant = purchase_grants(acme).get()
    assert (grant.amount, grant.remaining, grant.expires_at) == (D(500), D(500), None)
    entry = LedgerEntry.objects.get(grant=grant)
    assert entry.idempotency_key == f"stripe:checkout:{session['id']}"
    purchase = Purchase.objects.get(stripe_checkout_session_id=session["id"])
    assert (purchase.status, purchase.grant_id, purchase.credits) == ("paid", grant.pk, D(500))
    assert purchase.stripe_payment_intent_id == session["payment_intent"]

    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == StripeEventStatus.PROCESSED
    assert stored.signature_valid and stored.payload == evt
    assert stored.organization == acme and stored.attempts == 1
    assert "granted 500" in stored.note

    assert len(mailoutbox) == 1
    assert "Receipt" in mailoutbox[0].subject and "500" in mailoutbox[0].body


def test_the_same_event_delivered_three_times_grants_once(client, acme):
    evt = se.event("checkout.session.completed", se.pack_session("acme"))
    answers = [se.post(client, evt) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json().get("duplicate", False) for a in answers] == [False, True, True]
    assert purchase_grants(acme).count() == 1
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert (stored.deliveries, stored.attempts) == (3, 1)
    assert account_of(acme).balance == D(50) + D(500)  # free plan credits + the pack


def test_two_events_reporting_the_same_payment_grant_once(client, acme):
    session = se.pack_session("acme")
    se.post(client, se.event("checkout.session.completed", session))
    se.post(client, se.event("checkout.session.async_payment_succeeded", session))
    assert purchase_grants(acme).count() == 1
    assert StripeEvent.objects.filter(status="processed").count() == 2


def test_an_unpaid_session_waits_for_its_async_payment(client, acme):
    session = se.pack_session("acme", payment_status="unpaid")
    se.post(client, se.event("checkout.session.completed", session))
    purchase = Purchase.objects.get(stripe_checkout_session_id=session["id"])
    assert purchase.status == PurchaseStatus.PENDING and not purchase_grants(acme).exists()

    session["payment_status"] = "paid"
    se.post(client, se.event("checkout.session.async_payment_succeeded", session))
    purchase.refresh_from_db()
    assert purchase.status == PurchaseStatus.PAID
    assert purchase_grants(acme).get().amount == D(500)


def test_a_failed_async_payment_grants_nothing_and_tells_the_owner(
    client, acme, django_capture_on_commit_callbacks, mailoutbox
):
    session = se.pack_session("acme", payment_status="unpaid")
    se.post(client, se.event("checkout.session.completed", session))
    with django_capture_on_commit_callbacks(execute=True):
        se.post(client, se.event("checkout.session.async_payment_failed", session))
    assert Purchase.objects.get().status == PurchaseStatus.FAILED
    assert not purchase_grants(acme).exists()
    assert [m.subject for m in mailoutbox] == ["Payment failed for Acme on GPU Credits"]


# --- Refusals: counted and sampled (bounded), nothing stored, nothing granted --------------------


def refusal_trace() -> list[dict]:
    """Every sample of the refusal trace, oldest first (and the counters add up)."""
    rows = list(StripeWebhookRefusal.objects.order_by("hour"))
    samples = [s for row in rows for s in row.samples]
    return samples


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "no header", "body changed", "too old", "garbage header"],
)
def test_a_bad_signature_is_refused_and_only_traced(client, acme, tamper):
    evt = se.event("checkout.session.completed", se.pack_session("acme"))
    body = se.body_of(evt)
    signature = se.sign(body)
    if tamper == "wrong secret":
        signature = se.sign(body, secret="whsec_someone_else")
    elif tamper == "no header":
        signature = ""
    elif tamper == "body changed":
        body = body.replace(b'"credits-500"', b'"credits-12000"')
    elif tamper == "too old":
        signature = se.sign(body, timestamp=int(time.time()) - 3600)
    else:
        signature = "nonsense"
    response = se.post(client, body, signature=signature)
    assert response.status_code == 400
    assert "Invalid signature" in response.json()["error"]
    assert not StripeEvent.objects.exists()
    (trace,) = StripeWebhookRefusal.objects.all()
    assert trace.count == 1
    (sample,) = trace.samples
    assert sample["signature_valid"] is False and "Invalid signature" in sample["error"]
    assert sample["bytes"] == len(body) and sample["body"] == body.decode()[:1000]
    assert sample["type"] == ""  # an unverified body is not parsed
    assert not purchase_grants(acme).exists() and not Purchase.objects.exists()


def test_refused_deliveries_are_counted_but_only_a_few_bounded_samples_kept(client, acme):
    big = b'{"id": "evt_x", "payload": "' + b"x" * 100_000 + b'"}'
    for _ in range(webhooks.SAMPLES_PER_HOUR + 5):
        assert se.post(client, big, signature="t=1,v1=forged").status_code == 400
    (trace,) = StripeWebhookRefusal.objects.all()
    assert trace.count == webhooks.SAMPLES_PER_HOUR + 5
    assert len(trace.samples) == webhooks.SAMPLES_PER_HOUR
    assert all(len(s["body"]) <= 1000 and s["bytes"] == len(big) for s in trace.samples)
    assert not StripeEvent.objects.exists()


def test_old_refusal_traces_and_legacy_invalid_events_are_pruned(client, acme):
    from datetime import timedelta

    from django.utils import timezone

    se.post(client, b"{}", signature="nonsense")
    long_ago = timezone.now() - webhooks.REFUSAL_RETENTION - timedelta(hours=2)
    StripeWebhookRefusal.objects.update(hour=long_ago)
    se.post(client, b"{}", signature="nonsense")  # this hour's: kept
    legacy = StripeEvent.objects.create(
        status=StripeEventStatus.INVALID, raw_body="x" * 1000, received_at=long_ago
    )
    recent_legacy = StripeEvent.objects.create(status=StripeEventStatus.INVALID, raw_body="x")
    assert tasks.billing_prune_webhook_refusals() == 2
    assert StripeWebhookRefusal.objects.count() == 1
    assert set(StripeEvent.objects.values_list("pk", flat=True)) == {recent_legacy.pk}
    assert not StripeEvent.objects.filter(pk=legacy.pk).exists()


def test_a_forged_event_does_not_block_the_real_one(client, acme):
    evt = se.event("checkout.session.completed", se.pack_session("acme"))
    assert se.post(client, evt, secret="whsec_forger").status_code == 400
    assert se.post(client, evt).status_code == 200
    assert purchase_grants(acme).count() == 1


def test_webhooks_are_refused_while_no_secret_is_configured(client, acme, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = se.post(client, se.event("checkout.session.completed", se.pack_session("acme")))
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()
    assert StripeWebhookRefusal.objects.get().count == 1
    assert not purchase_grants(acme).exists()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"id": "evt_1", "type": "checkout.session.completed", "data": {', "Not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"type": "checkout.session.completed", "data": {"object": {}}}', "needs id, type"),
        (b'{"id": "evt_2", "type": "charge.refunded", "data": "x"}', "needs id, type"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        # Signed hostile bodies: each used to be a 500 (RecursionError; DataError storing NUL).
        (b"[" * 100_000, "Nested deeper"),
        (b'{"id": "evt_3", "type": "x", "data": {"object": ' * 200 + b"{}" + b"}}" * 200, "Nested"),
        (
            b'{"id": "evt_4", "type": "charge.refunded", "data": {"object": {"x": "\\u0000"}}}',
            "NUL",
        ),
        (b'{"id": "evt_5\\u0000", "type": "charge.refunded", "data": {"object": {}}}', "NUL"),
        (b'{"id": "evt_6", "type": "a\\ud800", "data": {"object": {}}}', "surrogate"),
    ],
)
def test_a_malformed_payload_is_refused_and_only_traced(client, acme, body, error):
    response = se.post(client, body)  # validly signed (over the bytes)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert not StripeEvent.objects.exists()
    (sample,) = refusal_trace()
    assert sample["signature_valid"] is (error != "not UTF-8")  # non-UTF-8 can't be checked
    assert error in sample["error"] and len(sample["body"]) <= 1000
    assert "\x00" not in json.dumps(sample)
    assert not Purchase.objects.exists()


def test_an_unknown_event_type_is_stored_and_ignored(client, acme):
    evt = se.event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})
    response = se.post(client, evt)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == StripeEventStatus.IGNORED
    assert "No handler" in stored.note and stored.payload == evt


def test_a_checkout_of_another_integration_is_ignored(client, acme):
    session = se.pack_session("acme")
    session["metadata"] = {}
    response = se.post(client, se.event("checkout.session.completed", session))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert not Purchase.objects.exists()


def test_an_unknown_organization_fails_with_a_clear_error_and_grants_nothing(client, acme):
    evt = se.event("checkout.session.completed", se.pack_session("nope"))
    response = se.post(client, evt)
    assert response.status_code == 500  # Stripe retries; staff may fix and reprocess
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == StripeEventStatus.FAILED
    assert stored.error.startswith("Unknown organization 'nope'")
    assert "nothing granted" in stored.error
    assert not Purchase.objects.exists()
    assert not CreditGrant.objects.filter(source=GrantSource.PURCHASE).exists()
    # Delivered again: the same clear failure, still nothing.
    assert se.post(client, evt).status_code == 500
    stored.refresh_from_db()
    assert (stored.attempts, stored.deliveries) == (2, 2)


def test_an_unknown_pack_fails_clearly(client, acme):
    evt = se.event("checkout.session.completed", se.pack_session("acme", pack="credits-1"))
    assert se.post(client, evt).status_code == 500
    stored = StripeEvent.objects.get()
    assert "Unknown credit pack 'credits-1'" in stored.error
    assert not purchase_grants(acme).exists()


def test_a_failing_handler_is_rolled_back_recorded_and_retried(client, acme, monkeypatch):
    real = purchases.purchase_grant

    def explode(**kwargs):
        real(**kwargs)  # writes the grant… then fails: the savepoint must undo it
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(purchases, "purchase_grant", explode)
    evt = se.event("checkout.session.completed", se.pack_session("acme"))
    response = se.post(client, evt)
    assert response.status_code == 500
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == StripeEventStatus.FAILED
    assert stored.error == "RuntimeError: disk on fire"
    assert not purchase_grants(acme).exists()
    assert not Purchase.objects.exists()

    monkeypatch.setattr(purchases, "purchase_grant", real)
    assert se.post(client, evt).status_code == 200  # Stripe's retry
    stored.refresh_from_db()
    assert (stored.status, stored.error, stored.attempts) == ("processed", "", 2)
    assert purchase_grants(acme).count() == 1


def test_staff_reprocess_applies_a_fixed_event_once(client, catalog):
    evt = se.event("checkout.session.completed", se.pack_session("late-org"))
    assert se.post(client, evt).status_code == 500
    org = linked_org("late-org")  # the data is fixed
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert webhooks.reprocess(event=stored).status_code == 200
    assert webhooks.reprocess(event=stored).body["duplicate"] is True
    assert purchase_grants(org).count() == 1


def test_the_method_must_be_post(client):
    assert client.get("/stripe/webhook/").status_code == 405


# --- Concurrency: real threads, a live server ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_grant_once(live_server, catalog):
    org = linked_org("racers")
    evt = se.event("checkout.session.completed", se.pack_session("racers"))
    body = se.body_of(evt)
    header = se.sign(body)
    url = f"{live_server.url}/stripe/webhook/"
    barrier = threading.Barrier(3)
    codes: list[int] = []

    def deliver():
        barrier.wait()
        r = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": header},
            timeout=30,
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    connection.close()

    assert codes == [200, 200, 200]
    assert purchase_grants(org).count() == 1
    assert Purchase.objects.count() == 1
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert (stored.status, stored.deliveries, stored.attempts) == ("processed", 3, 1)
    assert account_of(org).balance == D(550)


def test_the_payload_is_stored_before_processing(client, acme, monkeypatch):
    seen = {}

    def spy(*, event_pk, include_ignored=False):
        seen["stored"] = StripeEvent.objects.get(pk=event_pk)
        return webhooks.Outcome(200, {})

    monkeypatch.setattr(webhooks, "process", spy)
    evt = se.event("checkout.session.completed", se.pack_session("acme"))
    se.post(client, evt)
    assert seen["stored"].status == "received"
    assert json.dumps(seen["stored"].payload, sort_keys=True) == json.dumps(evt, sort_keys=True)
