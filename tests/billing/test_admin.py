"""Django admin for billing: the changelists and pages load, credit packs are edited (slug fixed
once created), webhook events are read-only with a "Reprocess selected events" action that
applies a fixed event exactly once, overage records get "Invoice now", auto top-up edits go
through the service."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, User
from credits.billing.models import (
    AutoTopUp,
    BillingEmail,
    CreditPack,
    LowBalanceAlert,
    Purchase,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
    StripeWebhookRefusal,
)
from credits.models import CreditGrant, GrantSource, OverageRecord
from tests.billing import stripe_events as se
from tests.billing.conftest import linked_org
from tests.factories import UserFactory, account_of, make_org

pytestmark = pytest.mark.django_db

BILLING_MODELS = [
    CreditPack,
    StripeCustomer,
    StripeEvent,
    StripeWebhookRefusal,
    Purchase,
    AutoTopUp,
    LowBalanceAlert,
    BillingEmail,
    OverageRecord,
]
READ_ONLY = [
    StripeCustomer,
    StripeEvent,
    StripeWebhookRefusal,
    Purchase,
    LowBalanceAlert,
    BillingEmail,
]


def url(model, view, *args):
    return reverse(f"admin:credits_{model._meta.model_name}_{view}", args=args)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="pw-root-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def acme(catalog):
    return linked_org("acme")


@pytest.fixture
def populated(acme, client):
    """One row of every billing model."""
    pack = CreditPack.objects.get(slug="credits-500")
    purchase = Purchase.objects.create(
        organization=acme,
        kind="credit_pack",
        pack=pack,
        credits=500,
        amount_usd=10,
        flagged=True,
        flag_reason="refund of spent credits",
    )
    AutoTopUp.objects.create(organization=acme, threshold_credits=100, pack=pack)
    LowBalanceAlert.objects.create(organization=acme, threshold_credits=50)
    BillingEmail.objects.create(organization=acme, kind="receipt", dedupe_key="receipt:1")
    now = timezone.now()
    OverageRecord.objects.create(
        account=account_of(acme),
        period_start=now - timezone.timedelta(days=30),
        period_end=now,
        credits=D("40"),
        usd_per_credit=D("0.025"),
        amount_usd=D("1"),
        plan_slug="starter",
    )
    se.post(client, se.event("checkout.session.completed", se.pack_session("nope")))
    se.post(client, b"not json")
    return purchase


def test_billing_models_are_registered():
    for model in BILLING_MODELS:
        assert admin.site.is_registered(model), model


def test_changelists_and_change_pages_load(staff_client, populated):
    for model in BILLING_MODELS:
        response = staff_client.get(url(model, "changelist"))
        assert response.status_code == 200, model
        obj = model.objects.first()
        assert staff_client.get(url(model, "change", obj.pk)).status_code == 200, model


def test_changelist_filters_and_search(staff_client, populated):
    events = url(StripeEvent, "changelist")
    failed = StripeEvent.objects.get(status=StripeEventStatus.FAILED)
    for query in (
        "?status__exact=failed",
        "?type=checkout.session.completed",
        f"?q={failed.event_id}",
        "?signature_valid__exact=0",
    ):
        response = staff_client.get(events + query)
        assert response.status_code == 200, query
    assert failed.event_id in staff_client.get(events + f"?q={failed.event_id}").content.decode()
    body = staff_client.get(url(Purchase, "changelist") + "?flagged__exact=1").content.decode()
    assert url(Purchase, "change", populated.pk) in body
    body = staff_client.get(url(Purchase, "changelist") + "?flagged__exact=0").content.decode()
    assert url(Purchase, "change", populated.pk) not in body
    assert staff_client.get(url(StripeCustomer, "changelist") + "?past_due=yes").status_code == 200


def test_read_only_models_cannot_be_added_changed_or_deleted(staff_client, populated):
    for model in READ_ONLY:
        assert staff_client.get(url(model, "add")).status_code == 403, model
        obj = model.objects.first()
        page = staff_client.get(url(model, "change", obj.pk)).content.decode()
        assert 'name="_save"' not in page, model
        assert staff_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403


def test_event_page_shows_the_payload_pretty_printed_and_the_error(staff_client, populated):
    event = StripeEvent.objects.get(status=StripeEventStatus.FAILED)
    body = staff_client.get(url(StripeEvent, "change", event.pk)).content.decode()
    assert '<pre class="stripe-payload">' in body
    assert "&quot;client_reference_id&quot;: &quot;nope&quot;" in body
    assert "Unknown organization" in body
    # A refused delivery is not an event: its hour's trace shows it, with a short sample.
    assert not StripeEvent.objects.filter(status=StripeEventStatus.INVALID).exists()
    trace = StripeWebhookRefusal.objects.get()
    body = staff_client.get(url(StripeWebhookRefusal, "change", trace.pk)).content.decode()
    assert "not json" in body and "Malformed payload" in body


def test_event_list_shows_status_signature_attempts_and_an_error_excerpt(staff_client, populated):
    body = staff_client.get(url(StripeEvent, "changelist")).content.decode()
    assert "Unknown organization" in body
    body = staff_client.get(url(StripeWebhookRefusal, "changelist")).content.decode()
    assert "Malformed payload" in body


# --- Reprocess ----------------------------------------------------------------------------------


def _action(client, model, action, pks):
    return client.post(
        url(model, "changelist"),
        {"action": action, admin.helpers.ACTION_CHECKBOX_NAME: [str(pk) for pk in pks]},
        follow=True,
    )


def test_reprocess_applies_a_fixed_event_exactly_once(staff_client, client, catalog, superuser):
    evt = se.event("checkout.session.completed", se.pack_session("late-org"))
    assert se.post(client, evt).status_code == 500
    stored = StripeEvent.objects.get(event_id=evt["id"])
    assert stored.status == StripeEventStatus.FAILED
    org = linked_org("late-org")  # staff fix the data

    response = _action(staff_client, StripeEvent, "reprocess_selected", [stored.pk])

    assert any("Reprocessed 1 event(s)" in m for m in _messages(response))
    stored.refresh_from_db()
    assert stored.status == StripeEventStatus.PROCESSED
    grants = CreditGrant.objects.filter(account__organization=org, source=GrantSource.PURCHASE)
    assert grants.count() == 1 and grants.get().amount == 500
    audit = AuditEvent.objects.get(action="billing.event_reprocessed")
    assert audit.actor == superuser

    # Again (and a redelivery): skipped, nothing more granted.
    response = _action(staff_client, StripeEvent, "reprocess_selected", [stored.pk])
    assert any("Skipped 1 event(s) already processed" in m for m in _messages(response))
    se.post(client, evt)
    assert grants.count() == 1
    assert AuditEvent.objects.filter(action="billing.event_reprocessed").count() == 1


def test_reprocess_reports_an_event_that_still_fails(staff_client, client, catalog):
    evt = se.event("checkout.session.completed", se.pack_session("ghost"))
    se.post(client, evt)
    stored = StripeEvent.objects.get(event_id=evt["id"])

    response = _action(staff_client, StripeEvent, "reprocess_selected", [stored.pk])

    assert any("Still failing" in m and "Unknown organization" in m for m in _messages(response))
    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == (StripeEventStatus.FAILED, 2)


def test_reprocess_needs_the_change_permission(client, populated):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_stripeevent"))
    client.force_login(viewer)
    body = client.get(url(StripeEvent, "changelist")).content.decode()
    assert "reprocess_selected" not in body


# --- Credit packs -------------------------------------------------------------------------------


def test_credit_pack_is_edited_and_its_slug_fixed(staff_client, catalog, superuser):
    pack = CreditPack.objects.get(slug="credits-2500")
    CreditPack.objects.filter(pk=pack.pk).update(stripe_price_id="price_old")
    data = {
        "slug": "hacked",
        "name": "2,500 credits (sale)",
        "credits": "3000",
        "price_usd": "35.00",
        "active": "",
        "sort_order": "2",
    }

    response = staff_client.post(url(CreditPack, "change", pack.pk), data, follow=True)

    assert response.status_code == 200
    pack.refresh_from_db()
    assert pack.slug == "credits-2500"  # read-only after creation
    assert (pack.name, pack.credits, pack.price_usd, pack.active) == (
        "2,500 credits (sale)",
        3000,
        D("35.00"),
        False,
    )
    assert pack.stripe_price_id == ""  # the old Stripe price is not used for the new amount
    assert any("stripe_sync" in m for m in _messages(response))
    audit = AuditEvent.objects.get(action="billing.credit_pack_changed")
    assert audit.actor == superuser and "price_usd" in audit.data["changed"]


def test_credit_pack_add_sets_the_slug_and_validates(staff_client, catalog):
    add = url(CreditPack, "add")
    page = staff_client.get(add).content.decode()
    assert 'name="slug"' in page
    bad = staff_client.post(
        add, {"slug": "credits-1", "name": "One", "credits": "0", "price_usd": "0", "sort_order": 0}
    )
    assert bad.status_code == 200  # the model's constraints, as form errors
    assert not CreditPack.objects.filter(slug="credits-1").exists()
    good = staff_client.post(
        add,
        {
            "slug": "credits-100",
            "name": "100 credits",
            "credits": "100",
            "price_usd": "2.50",
            "active": "on",
            "sort_order": 0,
        },
    )
    assert good.status_code == 302
    assert CreditPack.objects.get(slug="credits-100").price_usd == D("2.50")
    assert (
        staff_client.get(url(CreditPack, "delete", CreditPack.objects.first().pk)).status_code
        == 403
    )


# --- Overage: invoice now -----------------------------------------------------------------------


def test_invoice_now_creates_one_invoice_per_record(staff_client, catalog, fake_gateway):
    org = make_org(slug="busy", plan="starter")
    StripeCustomer.objects.create(organization=org, stripe_customer_id="cus_busy")
    now = timezone.now()
    record = OverageRecord.objects.create(
        account=account_of(org),
        period_start=now - timezone.timedelta(days=30),
        period_end=now,
        credits=D("100"),
        usd_per_credit=D("0.025"),
        amount_usd=D("2.5"),
        plan_slug="starter",
    )

    response = _action(staff_client, OverageRecord, "invoice_now", [record.pk])

    record.refresh_from_db()
    assert record.status == "invoiced" and record.stripe_invoice_id
    assert any(f"#{record.pk} → {record.stripe_invoice_id}" in m for m in _messages(response))
    response = _action(staff_client, OverageRecord, "invoice_now", [record.pk])
    assert any("Skipped 1 record(s) not open" in m for m in _messages(response))
    assert fake_gateway.count("invoice_create") == 1
    assert fake_gateway.count("invoice_item_create") == 1


def test_invoice_now_reports_stripe_errors(staff_client, catalog, fake_gateway):
    from tests.billing.fake_gateway import unavailable

    org = make_org(slug="busy", plan="starter")
    StripeCustomer.objects.create(organization=org, stripe_customer_id="cus_busy")
    now = timezone.now()
    record = OverageRecord.objects.create(
        account=account_of(org),
        period_start=now - timezone.timedelta(days=30),
        period_end=now,
        credits=D("100"),
        usd_per_credit=D("0.025"),
        amount_usd=D("2.5"),
        plan_slug="starter",
    )
    fake_gateway.fail_next["invoice_create"] = unavailable()

    response = _action(staff_client, OverageRecord, "invoice_now", [record.pk])

    assert any("Could not invoice" in m for m in _messages(response))
    record.refresh_from_db()
    assert record.status == "open" and not record.stripe_invoice_id


# --- Auto top-up --------------------------------------------------------------------------------


def test_auto_top_up_is_edited_through_the_service(staff_client, acme, superuser):
    config = AutoTopUp.objects.create(
        organization=acme,
        threshold_credits=100,
        pack=CreditPack.objects.get(slug="credits-500"),
        armed=False,
        failure_reason="declined",
    )
    data = {
        "enabled": "on",
        "threshold_credits": "300",
        "pack": CreditPack.objects.get(slug="credits-2500").pk,
    }

    response = staff_client.post(url(AutoTopUp, "change", config.pk), data)

    assert response.status_code == 302
    config.refresh_from_db()
    assert (config.enabled, config.threshold_credits, config.pack.slug) == (
        True,
        D("300"),
        "credits-2500",
    )
    assert config.armed is True and config.failure_reason == ""  # the service re-arms it
    assert AuditEvent.objects.filter(action="billing.auto_top_up_configured").exists()
    staff = AuditEvent.objects.get(action="billing.auto_top_up_changed_by_staff")
    assert staff.actor == superuser
    assert staff_client.get(url(AutoTopUp, "add")).status_code == 403


def test_auto_top_up_refusals_are_form_errors(staff_client, catalog):
    org = make_org(slug="nocard", plan="free")  # no Stripe customer
    config = AutoTopUp.objects.create(
        organization=org, threshold_credits=100, pack=CreditPack.objects.get(slug="credits-500")
    )
    CreditPack.objects.filter(slug="credits-12000").update(active=False)
    page = staff_client.post(
        url(AutoTopUp, "change", config.pk),
        {
            "enabled": "on",
            "threshold_credits": "-1",
            "pack": CreditPack.objects.get(slug="credits-12000").pk,
        },
    )
    assert page.status_code == 200
    body = page.content.decode()
    assert "no saved card" in body
    assert "not offered" in body
    config.refresh_from_db()
    assert (config.enabled, config.threshold_credits) == (False, 100)
