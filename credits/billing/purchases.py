"""Credit pack purchases: the grant when paid (once, whatever delivers the news) and the
clawback when refunded."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from credits import ledger, services
from credits.billing import emails
from credits.billing.errors import RetryLater, Unprocessable
from credits.billing.models import CreditPack, Purchase, PurchaseKind, PurchaseStatus
from credits.billing.stripe_objects import Obj, charge_payment_intent_id, metadata, ref_id
from credits.models import CreditGrant, EntryAllocation, GrantSource
from credits.money import CREDIT_QUANTUM

logger = logging.getLogger(__name__)

PAID_STATES = ("paid", "no_payment_required")


def checkout_grant_key(session_id: str) -> str:
    return f"stripe:checkout:{session_id}"


def payment_intent_grant_key(payment_intent_id: str) -> str:
    return f"stripe:payment_intent:{payment_intent_id}"


def purchase_grant(*, purchase: Purchase, idempotency_key: str, now: datetime) -> CreditGrant:
    """Put a paid purchase's credits into the account: one purchase grant (never expiring unless
    BILLING_PACK_CREDITS_EXPIRE_DAYS), one audit row, one receipt. The caller holds the purchase
    row lock; a purchase already granted is returned as it is."""
    if purchase.grant_id:
        return purchase.grant
    account = services.account_for(organization=purchase.organization)
    days = settings.BILLING_PACK_CREDITS_EXPIRE_DAYS
    name = purchase.pack.name if purchase.pack else f"{purchase.credits} credits"
    grant = ledger.grant_create(
        account=account,
        amount=purchase.credits,
        source=GrantSource.PURCHASE,
        idempotency_key=idempotency_key,
        expires_at=now + timedelta(days=days) if days > 0 else None,
        reference=f"{purchase.get_kind_display()} #{purchase.pk}",
        reason=f"{name} ({purchase.get_kind_display().lower()})",
        now=now,
    )
    purchase.grant = grant
    purchase.status = PurchaseStatus.PAID
    purchase.paid_at = now
    purchase.failure_reason = ""
    purchase.save(update_fields=["grant", "status", "paid_at", "failure_reason", "updated_at"])
    audit_record(
        action="credits.purchased",
        organization=purchase.organization,
        target=purchase,
        data={
            "kind": purchase.kind,
            "pack": purchase.pack.slug if purchase.pack else "",
            "credits": str(purchase.credits),
            "usd": str(purchase.amount_usd),
            "grant": grant.pk,
            "checkout_session": purchase.stripe_checkout_session_id,
            "payment_intent": purchase.stripe_payment_intent_id,
        },
    )
    emails.queue(
        organization=purchase.organization,
        kind=emails.RECEIPT,
        dedupe_key=f"receipt:purchase:{purchase.pk}",
        context={
            "description": name,
            "amount": emails.usd(purchase.amount_usd),
            "credits": purchase.credits,
            "date": now,
            "reference": purchase.stripe_payment_intent_id
            or purchase.stripe_checkout_session_id
            or f"purchase {purchase.pk}",
        },
    )
    return grant


# --- Checkout ---------------------------------------------------------------------------------


def _checkout_purchase(*, organization: Organization, session: Obj) -> Purchase:
    """The purchase a pack Checkout session belongs to (created with the session; made from the
    session's metadata when it was not, e.g. a session created outside this app), locked."""
    session_id = session["id"]
    purchase = (
        Purchase.objects.select_for_update(of=("self",))
        .select_related("pack", "organization")
        .filter(stripe_checkout_session_id=session_id)
        .first()
    )
    if purchase is None:
        slug = metadata(session).get("pack")
        pack = CreditPack.objects.filter(slug=slug).first() if slug else None
        if pack is None:
            raise Unprocessable(
                f"Unknown credit pack {slug!r} (metadata.pack of Checkout session {session_id}); "
                "nothing granted."
            )
        try:
            with transaction.atomic():
                Purchase.objects.create(
                    organization=organization,
                    kind=PurchaseKind.CREDIT_PACK,
                    pack=pack,
                    credits=pack.credits,
                    amount_usd=pack.price_usd,
                    stripe_checkout_session_id=session_id,
                )
        except IntegrityError:
            pass  # created concurrently
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .select_related("pack", "organization")
            .get(stripe_checkout_session_id=session_id)
        )
    if purchase.organization_id != organization.pk:
        raise Unprocessable(
            f"Checkout session {session_id} belongs to {purchase.organization.slug}, "
            f"not {organization.slug}; nothing granted."
        )
    return purchase


def checkout_completed(
    *, organization: Organization, session: Obj, now: datetime
) -> tuple[Purchase, str]:
    """A pack Checkout session completed (or its delayed payment succeeded): grant once when
    paid. Returns the purchase and a note."""
    purchase = _checkout_purchase(organization=organization, session=session)
    updates = []
    pi = ref_id(session.get("payment_intent"))
    if pi and not purchase.stripe_payment_intent_id:
        purchase.stripe_payment_intent_id = pi
        updates.append("stripe_payment_intent_id")
    if session.get("amount_total") is not None and not purchase.grant_id:
        purchase.amount_usd = Decimal(int(session["amount_total"])) / 100
        purchase.currency = session.get("currency") or purchase.currency
        updates += ["amount_usd", "currency"]
    if updates:
        purchase.save(update_fields=[*updates, "updated_at"])
    if purchase.grant_id:
        return purchase, f"purchase {purchase.pk} already granted"
    if session.get("payment_status") not in PAID_STATES:
        return purchase, f"purchase {purchase.pk} awaits payment ({session.get('payment_status')})"
    grant = purchase_grant(
        purchase=purchase, idempotency_key=checkout_grant_key(session["id"]), now=now
    )
    return purchase, f"granted {grant.amount} credits (purchase {purchase.pk}, grant {grant.pk})"


def checkout_payment_failed(*, organization: Organization, session: Obj) -> str:
    purchase = _checkout_purchase(organization=organization, session=session)
    if purchase.status != PurchaseStatus.PENDING:
        return f"purchase {purchase.pk} is {purchase.status}"
    purchase.status = PurchaseStatus.FAILED
    purchase.failure_reason = "The delayed payment failed."
    purchase.save(update_fields=["status", "failure_reason", "updated_at"])
    emails.queue(
        organization=organization,
        kind=emails.PAYMENT_FAILED,
        dedupe_key=f"payment_failed:checkout:{session['id']}",
        context={
            "description": purchase.pack.name if purchase.pack else "Credit pack",
            "amount": emails.usd(purchase.amount_usd),
            "reason": purchase.failure_reason,
        },
    )
    return f"purchase {purchase.pk} failed"


def checkout_expired(*, session: Obj) -> str:
    updated = Purchase.objects.filter(
        stripe_checkout_session_id=session["id"], status=PurchaseStatus.PENDING
    ).update(status=PurchaseStatus.CANCELED, failure_reason="Checkout expired.")
    return "purchase canceled" if updated else "no pending purchase"


# --- Refunds ----------------------------------------------------------------------------------


def purchase_for_charge(charge: Obj) -> Purchase | None:
    pi = charge_payment_intent_id(charge)
    purchase = None
    if pi:
        purchase = Purchase.objects.filter(stripe_payment_intent_id=pi).first()
    if purchase is None and charge.get("id"):
        purchase = Purchase.objects.filter(stripe_charge_id=charge["id"]).first()
    return purchase


def refunded_credits(*, credits: Decimal, amount_cents: int, refunded_cents: int) -> Decimal:
    """The share of a purchase's credits a refund of `refunded_cents` out of `amount_cents`
    takes back (pro rata, to 3 places, never more than bought)."""
    if amount_cents <= 0 or refunded_cents >= amount_cents:
        return credits
    share = credits * Decimal(refunded_cents) / Decimal(amount_cents)
    return min(credits, share.quantize(CREDIT_QUANTUM, rounding=ROUND_HALF_UP))


def refund(*, purchase: Purchase, charge: Obj, now: datetime | None = None) -> str:
    """A charge of this purchase was refunded (in part or in full; `amount_refunded` is the
    running total). The refunded share of its credits leaves the account: what the purchase
    grant still holds is taken back; what was already spent becomes unfunded (a negative
    balance, billed like overage at the next period close) and the purchase is flagged."""
    now = now or timezone.now()
    purchase = (
        Purchase.objects.select_for_update(of=("self",))
        .select_related("organization", "pack", "grant")
        .get(pk=purchase.pk)
    )
    if purchase.grant_id is None:
        if purchase.status == PurchaseStatus.PENDING:
            raise RetryLater(f"Purchase {purchase.pk} is not paid yet; its refund waits for it.")
        return f"purchase {purchase.pk} was never granted ({purchase.status}): nothing to take back"
    amount = int(charge.get("amount") or 0)
    refunded = int(charge.get("amount_refunded") or 0)
    if charge.get("refunded") and not refunded:
        refunded = amount
    if refunded <= purchase.refunded_cents:
        return f"refund of {refunded} cents already applied to purchase {purchase.pk}"
    target = refunded_credits(
        credits=purchase.credits, amount_cents=amount, refunded_cents=refunded
    )
    delta = target - purchase.credits_refunded
    note = f"purchase {purchase.pk}: refunded {refunded}/{amount} cents"
    if delta > 0:
        charge_id = charge.get("id") or ""
        entry = ledger.grant_clawback(
            grant=purchase.grant,
            amount=delta,
            idempotency_key=f"stripe:refund:{charge_id}:{refunded}",
            reason=f"refund of purchase #{purchase.pk} ({charge_id})",
            now=now,
        )
        from_grant = -(
            EntryAllocation.objects.filter(entry=entry, grant_id=purchase.grant_id).aggregate(
                s=Sum("amount")
            )["s"]
            or Decimal(0)
        )
        unfunded = delta - from_grant
        purchase.credits_clawed_back += from_grant
        purchase.credits_unfunded += unfunded
        audit_record(
            action="credits.refund_clawed_back",
            organization=purchase.organization,
            target=purchase,
            data={
                "charge": charge_id,
                "refunded_cents": refunded,
                "credits": str(delta),
                "from_grant": str(from_grant),
                "unfunded": str(unfunded),
                "entry": entry.pk,
            },
        )
        if unfunded > 0:
            purchase.flagged = True
            purchase.flag_reason = (
                f"{purchase.credits_unfunded} refunded credits had already been spent: "
                "posted as unfunded (negative balance), billed as overage at the next period "
                "close. Review the refund."
            )[:500]
            audit_record(
                action="billing.refund_unfunded",
                organization=purchase.organization,
                target=purchase,
                data={"unfunded": str(unfunded), "charge": charge_id},
            )
        note += f", took back {from_grant} credits, {unfunded} unfunded"
    purchase.refunded_cents = refunded
    purchase.stripe_charge_id = purchase.stripe_charge_id or (charge.get("id") or "")
    purchase.status = (
        PurchaseStatus.REFUNDED if refunded >= amount else PurchaseStatus.PARTIALLY_REFUNDED
    )
    purchase.save()
    return note
