"""Overage invoices: each open OverageRecord (one per organization and period, written by
`credits.services.overage_close` when a period closes) becomes one Stripe invoice with one
invoice item; its payment (`invoice.paid`) settles the overage in the ledger.

Idempotent at every step, even across crashes and concurrent runs:

1. the record row is locked (SKIP LOCKED: a concurrent run skips it);
2. the invoice is created with the idempotency key ``overage:<record id>:invoice`` and its id
   is committed on the record at once (a re-run reuses it instead of creating another);
3. under the lock again: the item is added only if the invoice has no line for this record
   yet (key ``overage:<id>:item``), a draft is finalized, a card-collected invoice is paid;
   then the record is `invoiced`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.services import audit_record
from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from credits import ledger
from credits.billing import emails
from credits.billing import gateway as gw
from credits.billing.catalog import usd_to_cents
from credits.billing.customers import customer_ensure
from credits.billing.errors import PaymentDeclined, Unprocessable
from credits.billing.stripe_objects import Obj, metadata
from credits.models import OverageRecord, OverageStatus

logger = logging.getLogger(__name__)

KIND = "overage"


def _locked(record_id: int) -> OverageRecord | None:
    return (
        OverageRecord.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("account__organization")
        .filter(pk=record_id, status=OverageStatus.OPEN)
        .first()
    )


def _description(record: OverageRecord) -> str:
    return (
        f"Overage {record.period_start:%Y-%m-%d} – {record.period_end:%Y-%m-%d}: "
        f"{record.credits.normalize():f} credits × {record.usd_per_credit.normalize():f} USD "
        f"({record.plan_slug})"
    )


def _metadata(record: OverageRecord) -> dict:
    return {
        "kind": KIND,
        "overage_record": str(record.pk),
        "organization": record.account.organization.slug,
        "period_start": record.period_start.isoformat(),
    }


def invoice_overage(*, record_id: int, now: datetime | None = None) -> str | None:
    """Invoice one open overage record (see the module docstring). Returns the Stripe invoice
    id, or None when the record is not open or another run holds it."""
    now = now or timezone.now()
    gateway = gw.get_gateway()
    with transaction.atomic():
        record = _locked(record_id)
        if record is None:
            return None
        organization = record.account.organization
        cents = usd_to_cents(record.amount_usd)
        if cents <= 0:
            record.status = OverageStatus.VOID
            record.save(update_fields=["status", "updated_at"])
            audit_record(
                action="overage.waived",
                organization=organization,
                target=record,
                data={"credits": str(record.credits), "reason": "rounds to 0 USD"},
            )
            return None
        customer = customer_ensure(organization=organization)
        if not record.stripe_invoice_id:
            # Stripe's current default (the stored one may lag behind customer.updated).
            payment_method = (
                gateway.default_payment_method(customer.stripe_customer_id)
                or customer.default_payment_method_id
            )
            invoice = gateway.invoice_create(
                customer_id=customer.stripe_customer_id,
                description=f"{settings.SITE_NAME} overage",
                metadata=_metadata(record),
                default_payment_method=payment_method,
                days_until_due=settings.BILLING_OVERAGE_DAYS_UNTIL_DUE,
                idempotency_key=f"overage:{record.pk}:invoice",
            )
            record.stripe_invoice_id = invoice["id"]
            record.save(update_fields=["stripe_invoice_id", "updated_at"])
    # The invoice id is committed: whatever happens next, a re-run reuses this invoice.
    with transaction.atomic():
        record = _locked(record_id)
        if record is None:
            return None
        organization = record.account.organization
        customer = customer_ensure(organization=organization)
        invoice = gateway.invoice_retrieve(record.stripe_invoice_id)
        if invoice.get("status") == "draft":
            lines = (invoice.get("lines") or {}).get("data") or []
            if not any(metadata(line).get("overage_record") == str(record.pk) for line in lines):
                gateway.invoice_item_create(
                    customer_id=customer.stripe_customer_id,
                    invoice_id=invoice["id"],
                    amount_cents=usd_to_cents(record.amount_usd),
                    description=_description(record),
                    metadata=_metadata(record),
                    idempotency_key=f"overage:{record.pk}:item",
                )
            invoice = gateway.invoice_finalize(
                invoice["id"], idempotency_key=f"overage:{record.pk}:finalize"
            )
        if invoice.get("status") == "open" and (
            invoice.get("collection_method") == "charge_automatically"
        ):
            try:
                invoice = gateway.invoice_pay(
                    invoice["id"], idempotency_key=f"overage:{record.pk}:pay"
                )
            except PaymentDeclined as exc:
                # Stripe retries it (smart retries); invoice.payment_failed tells the owner.
                logger.info("overage invoice %s not paid yet: %s", invoice["id"], exc)
        record.status = OverageStatus.INVOICED
        record.save(update_fields=["status", "updated_at"])
        audit_record(
            action="overage.invoiced",
            organization=organization,
            target=record,
            data={"invoice": invoice["id"], "usd": str(record.amount_usd)},
        )
        webhook_event_emit(
            organization=organization,
            type=EventType.OVERAGE_INVOICED,
            payload={
                "invoice": invoice["id"],
                "period_start": record.period_start.isoformat(),
                "period_end": record.period_end.isoformat(),
                "credits": str(record.credits),
                "usd_per_credit": str(record.usd_per_credit),
                "amount_usd": str(record.amount_usd),
            },
            dedupe_key=f"overage_invoiced:{record.pk}",
        )
        emails.queue(
            organization=organization,
            kind=emails.OVERAGE_INVOICE,
            dedupe_key=f"overage_invoice:{record.pk}",
            context={
                "period_start": record.period_start,
                "period_end": record.period_end,
                "credits": record.credits,
                "usd_per_credit": record.usd_per_credit,
                "plan": record.plan_slug,
                "amount": emails.usd(record.amount_usd),
                "charge_automatically": invoice.get("collection_method") == "charge_automatically",
                "days_until_due": settings.BILLING_OVERAGE_DAYS_UNTIL_DUE,
                "invoice_url": invoice.get("hosted_invoice_url") or "",
            },
        )
        if invoice.get("status") == "paid":
            ledger.overage_settle(
                record=record, now=now, reason=f"overage invoice {invoice['id']} paid"
            )
        return invoice["id"]


def invoice_open_overages(*, limit: int = 200) -> int:
    """Beat task: invoice every open overage record. A record that fails (Stripe down…) stays
    open and is tried again on the next run."""
    ids = list(
        OverageRecord.objects.filter(status=OverageStatus.OPEN)
        .order_by("period_end", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    done = 0
    for record_id in ids:
        try:
            if invoice_overage(record_id=record_id):
                done += 1
        except Exception:
            logger.exception("overage record %s could not be invoiced", record_id)
    return done


def record_for_invoice(invoice: Obj) -> OverageRecord | None:
    meta = metadata(invoice)
    record = None
    if meta.get("kind") == KIND and str(meta.get("overage_record", "")).isdigit():
        record = OverageRecord.objects.filter(pk=int(meta["overage_record"])).first()
    if record is None and invoice.get("id"):
        record = OverageRecord.objects.filter(stripe_invoice_id=invoice["id"]).first()
    return record


def invoice_paid(*, invoice: Obj, now: datetime) -> str:
    record = record_for_invoice(invoice)
    if record is None:
        raise Unprocessable(
            f"Overage invoice {invoice.get('id')} names no known overage record; nothing settled."
        )
    if record.status == OverageStatus.VOID:
        return f"overage record {record.pk} is void: not settled"
    entry = ledger.overage_settle(
        record=record, now=now, reason=f"overage invoice {invoice.get('id')} paid"
    )
    if not record.stripe_invoice_id:
        OverageRecord.objects.filter(pk=record.pk).update(stripe_invoice_id=invoice.get("id", ""))
    return f"overage record {record.pk} settled (entry {entry.pk})"


def invoice_payment_failed(*, invoice: Obj) -> str:
    record = record_for_invoice(invoice)
    if record is None:
        return "no overage record for this invoice"
    emails.queue(
        organization=record.account.organization,
        kind=emails.PAYMENT_FAILED,
        dedupe_key=f"payment_failed:invoice:{invoice.get('id')}:{invoice.get('attempt_count')}",
        context={
            "description": _description(record),
            "amount": emails.usd(record.amount_usd),
            "reason": "The card was declined.",
            "invoice_url": invoice.get("hosted_invoice_url") or "",
        },
    )
    return f"overage record {record.pk}: payment failed, owner notified"


def invoice_voided(*, invoice: Obj) -> str:
    record = record_for_invoice(invoice)
    if record is None:
        return "no overage record for this invoice"
    updated = OverageRecord.objects.filter(
        pk=record.pk, status__in=[OverageStatus.OPEN, OverageStatus.INVOICED]
    ).update(status=OverageStatus.VOID, updated_at=timezone.now())
    if updated:
        audit_record(
            action="overage.voided",
            organization=record.account.organization,
            target=record,
            data={"invoice": invoice.get("id")},
        )
    return f"overage record {record.pk} void" if updated else f"record {record.pk} unchanged"
