"""Auto top-up (opt-in) and low-balance alerts, both once per threshold crossing.

A crossing is the balance going from at-or-above the threshold to below it. Each setting row
has an `armed` flag: a conditional UPDATE (armed → false) claims the crossing — exactly one
claimer wins however many workers look at once — and the flag is set again only when available
credits are back at or above the threshold (and, for top-ups, no charge is in flight). A top-up
smaller than the gap leaves the balance below the threshold: no second purchase until it has
been above again.

Checked by the `billing_balance_watch` beat task every minute; other apps may call
`balance_check_soon(organization_id)` after spending (it queues the check after commit).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from config.errors import ServiceError, ValidationError
from credits.billing import emails
from credits.billing import gateway as gw
from credits.billing.access import require_manager
from credits.billing.catalog import usd_to_cents
from credits.billing.models import (
    AutoTopUp,
    CreditPack,
    LowBalanceAlert,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
    StripeCustomer,
)
from credits.billing.purchases import payment_intent_grant_key, purchase_grant
from credits.billing.stripe_objects import Obj, ref_id
from credits.models import CreditAccount
from credits.money import parse_credits

logger = logging.getLogger(__name__)


def available_credits(organization_id: int) -> Decimal | None:
    row = CreditAccount.objects.filter(organization_id=organization_id).values_list(
        "balance", "held"
    )
    row = row.first()
    return None if row is None else row[0] - row[1]


# --- Settings (the billing page) ---------------------------------------------------------------


@transaction.atomic
def auto_top_up_configure(
    *,
    organization: Organization,
    actor,
    enabled: bool,
    threshold_credits,
    pack: CreditPack,
    monthly_cap_credits=None,
    max_per_month: int | None = 10,
) -> AutoTopUp:
    """Turn auto top-up on or off, with its threshold and pack and its monthly limits (credits
    bought, number of purchases; None: no limit). Turning it on needs a saved card (a Stripe
    customer: after a first purchase or subscription) and re-arms it."""
    require_manager(organization=organization, actor=actor)
    threshold = parse_credits(threshold_credits, field="threshold_credits", allow_zero=True)
    cap = (
        None
        if monthly_cap_credits in (None, "")
        else parse_credits(monthly_cap_credits, field="monthly_cap_credits")
    )
    if max_per_month is not None and not 1 <= int(max_per_month) <= 1000:
        raise ValidationError(
            "Top-ups per month: from 1 to 1000, or empty for no limit.",
            errors={"max_per_month": ["1 to 1000."]},
        )
    if not pack.active:
        raise ValidationError("This credit pack is not offered.", errors={"pack": ["Inactive."]})
    if enabled and not StripeCustomer.objects.filter(organization=organization).exists():
        raise ValidationError(
            "Buy a credit pack or subscribe first, so a card is saved for automatic payments.",
            errors={"enabled": ["No saved card."]},
        )
    config, _ = AutoTopUp.objects.select_for_update().get_or_create(
        organization=organization,
        defaults={"threshold_credits": threshold, "pack": pack, "enabled": False},
    )
    turning_on = enabled and not config.enabled
    config.enabled = enabled
    config.threshold_credits = threshold
    config.pack = pack
    if (cap, max_per_month) != (config.monthly_cap_credits, config.max_per_month):
        config.capped_month = None  # new limits: the page's "stopped" notice no longer applies
    config.monthly_cap_credits = cap
    config.max_per_month = max_per_month
    config.updated_by = actor
    if turning_on:
        config.armed = True
        config.failure_reason = ""
    config.save()
    audit_record(
        action="billing.auto_top_up_configured",
        organization=organization,
        actor=actor,
        target=config,
        data={
            "enabled": enabled,
            "threshold": str(threshold),
            "pack": pack.slug,
            "monthly_cap": None if cap is None else str(cap),
            "max_per_month": max_per_month,
        },
    )
    return config


@transaction.atomic
def low_balance_alert_configure(
    *, organization: Organization, actor, enabled: bool, threshold_credits
) -> LowBalanceAlert:
    require_manager(organization=organization, actor=actor)
    threshold = parse_credits(threshold_credits, field="threshold_credits", allow_zero=True)
    alert, _ = LowBalanceAlert.objects.select_for_update().get_or_create(
        organization=organization, defaults={"threshold_credits": threshold}
    )
    if threshold != alert.threshold_credits or (enabled and not alert.enabled):
        alert.armed = True
    alert.enabled = enabled
    alert.threshold_credits = threshold
    alert.save()
    audit_record(
        action="billing.low_balance_alert_configured",
        organization=organization,
        actor=actor,
        target=alert,
        data={"enabled": enabled, "threshold": str(threshold)},
    )
    return alert


# --- Auto top-up --------------------------------------------------------------------------------


def auto_top_up_check(*, organization_id: int, now: datetime | None = None) -> Purchase | None:
    """Fire the organization's auto top-up if its balance is below the threshold and this
    crossing has not fired yet; re-arm it when the balance is back up. Returns the purchase."""
    now = now or timezone.now()
    config = (
        AutoTopUp.objects.filter(organization_id=organization_id, enabled=True)
        .select_related("pack", "last_purchase")
        .first()
    )
    if config is None:
        return None
    available = available_credits(organization_id)
    if available is None:
        return None
    if available >= config.threshold_credits:
        if not config.armed:
            AutoTopUp.objects.filter(pk=config.pk, armed=False).exclude(
                last_purchase__status=PurchaseStatus.PENDING
            ).update(armed=True, updated_at=now)
        return None
    with transaction.atomic():
        claimed = AutoTopUp.objects.filter(pk=config.pk, enabled=True, armed=True).update(
            armed=False, last_triggered_at=now, updated_at=now
        )
        if not claimed:
            return None
        pack = config.pack
        # The claim locks the row: concurrent checks see each other's purchases here.
        capped = _cap_reached(config=config, pack=pack, now=now)
        if capped:
            _capped(config=config, reason=capped, now=now)
            return None
        purchase = Purchase.objects.create(
            organization_id=organization_id,
            kind=PurchaseKind.AUTO_TOP_UP,
            pack=pack,
            credits=pack.credits,
            amount_usd=pack.price_usd,
            currency=settings.STRIPE_CURRENCY,
        )
        AutoTopUp.objects.filter(pk=config.pk).update(last_purchase=purchase)
        audit_record(
            action="billing.auto_top_up_triggered",
            organization=purchase.organization,
            target=purchase,
            data={
                "available": str(available),
                "threshold": str(config.threshold_credits),
                "pack": pack.slug,
            },
        )
    return charge(purchase=purchase, now=now)


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _cap_reached(*, config: AutoTopUp, pack: CreditPack, now: datetime) -> str:
    """Why another top-up of `pack` this month would pass a cap ("" if none). Counts this
    month's automatic purchases that are pending or paid (one aggregate query)."""
    if config.monthly_cap_credits is None and config.max_per_month is None:
        return ""
    month = Purchase.objects.filter(
        organization_id=config.organization_id,
        kind=PurchaseKind.AUTO_TOP_UP,
        created_at__gte=month_start(now),
    ).exclude(status=PurchaseStatus.FAILED)
    totals = month.aggregate(count=Count("id"), credits=Sum("credits"))
    bought = totals["credits"] or Decimal(0)
    if config.max_per_month is not None and totals["count"] >= config.max_per_month:
        return f"the limit of {config.max_per_month} automatic purchases this month"
    cap = config.monthly_cap_credits
    if cap is not None and bought + pack.credits > cap:
        return f"the monthly cap of {cap.normalize():f} credits"
    return ""


def _capped(*, config: AutoTopUp, reason: str, now: datetime) -> None:
    """A cap stopped this top-up: stays armed (it may buy again next month), recorded for the
    billing page, audited and emailed once per month (in the claim's transaction)."""
    month = month_start(now).date()
    AutoTopUp.objects.filter(pk=config.pk).update(armed=True, updated_at=now)
    first = (
        AutoTopUp.objects.filter(pk=config.pk)
        .exclude(capped_month=month)
        .update(capped_month=month, updated_at=now)
    )
    if not first:
        return
    organization = Organization.objects.get(pk=config.organization_id)
    audit_record(
        action="billing.auto_top_up_capped",
        organization=organization,
        target=config,
        data={"reason": reason, "month": month.isoformat()},
    )
    emails.queue(
        organization=organization,
        kind=emails.AUTO_TOP_UP_CAPPED,
        dedupe_key=f"auto_top_up_capped:{organization.pk}:{month:%Y-%m}",
        context={"reason": reason, "month": month.strftime("%B %Y")},
    )


def charge(*, purchase: Purchase, now: datetime | None = None) -> Purchase:
    """Charge an auto top-up off-session with the saved card (idempotency key from the
    purchase). Stripe unreachable: the purchase stays pending and is retried."""
    now = now or timezone.now()
    customer = StripeCustomer.objects.filter(organization_id=purchase.organization_id).first()
    if customer is None:
        return fail(purchase_id=purchase.pk, reason="No saved card (no Stripe customer).")
    gateway = gw.get_gateway()
    try:
        # Stripe's current default (the stored one may lag behind customer.updated).
        payment_method = (
            gateway.default_payment_method(customer.stripe_customer_id)
            or customer.default_payment_method_id
        )
        if not payment_method:
            return fail(purchase_id=purchase.pk, reason="No saved card.")
        intent = gateway.payment_intent_off_session(
            customer_id=customer.stripe_customer_id,
            payment_method_id=payment_method,
            amount_cents=usd_to_cents(purchase.amount_usd),
            metadata={
                "kind": PurchaseKind.AUTO_TOP_UP.value,
                "organization": purchase.organization.slug,
                "pack": purchase.pack.slug if purchase.pack else "",
                "purchase": str(purchase.pk),
            },
            idempotency_key=f"auto-top-up:{purchase.pk}",
        )
    except ServiceError as exc:
        if getattr(exc, "retryable", False):
            logger.warning("auto top-up %s not sent, will retry: %s", purchase.pk, exc)
            return purchase
        return fail(
            purchase_id=purchase.pk,
            reason=exc.detail,
            payment_intent=exc.extra.get("payment_intent", ""),
        )
    return payment_intent_update(purchase_id=purchase.pk, intent=intent, now=now)


def payment_intent_update(*, purchase_id: int, intent: Obj, now: datetime) -> Purchase:
    """What a PaymentIntent of an auto top-up says: succeeded → grant once; needs the customer
    or failed → the top-up fails (and is disabled); processing → wait for the webhook."""
    status = intent.get("status")
    if status in ("requires_action", "requires_payment_method", "canceled"):
        error = intent.get("last_payment_error") or {}
        reason = (
            error.get("message")
            or {
                "requires_action": "The card needs the cardholder to authenticate the payment.",
                "requires_payment_method": "The card was declined.",
                "canceled": "The payment was canceled.",
            }[status]
        )
        return fail(purchase_id=purchase_id, reason=reason, payment_intent=intent.get("id", ""))
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .select_related("organization", "pack")
            .get(pk=purchase_id)
        )
        updates = []
        if intent.get("id") and not purchase.stripe_payment_intent_id:
            purchase.stripe_payment_intent_id = intent["id"]
            updates.append("stripe_payment_intent_id")
        charge_id = ref_id(intent.get("latest_charge"))
        if charge_id and not purchase.stripe_charge_id:
            purchase.stripe_charge_id = charge_id
            updates.append("stripe_charge_id")
        if updates:
            purchase.save(update_fields=[*updates, "updated_at"])
        if status == "succeeded":
            purchase_grant(
                purchase=purchase,
                idempotency_key=payment_intent_grant_key(intent["id"]),
                now=now,
            )
            AutoTopUp.objects.filter(organization_id=purchase.organization_id).update(
                last_succeeded_at=now
            )
        return purchase


def fail(*, purchase_id: int, reason: str, payment_intent: str = "") -> Purchase:
    """The top-up was declined (or can't be paid): the purchase fails, auto top-up is turned
    off and the owners are told. Once."""
    now = timezone.now()
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .select_related("organization", "pack")
            .get(pk=purchase_id)
        )
        if purchase.status != PurchaseStatus.PENDING:
            return purchase
        purchase.status = PurchaseStatus.FAILED
        purchase.failure_reason = reason[:500]
        if payment_intent and not purchase.stripe_payment_intent_id:
            purchase.stripe_payment_intent_id = payment_intent
        purchase.save()
        config = AutoTopUp.objects.filter(organization_id=purchase.organization_id).first()
        AutoTopUp.objects.filter(organization_id=purchase.organization_id).update(
            enabled=False, failure_reason=reason[:500], last_failed_at=now, updated_at=now
        )
        audit_record(
            action="billing.auto_top_up_failed",
            organization=purchase.organization,
            target=purchase,
            data={"reason": reason[:500], "disabled": True},
        )
        emails.queue(
            organization=purchase.organization,
            kind=emails.AUTO_TOP_UP_FAILED,
            dedupe_key=f"auto_top_up_failed:{purchase.pk}",
            context={
                "reason": reason,
                "threshold": config.threshold_credits if config else "",
                "pack_name": purchase.pack.name if purchase.pack else "",
                "amount": emails.usd(purchase.amount_usd),
            },
        )
        return purchase


def retry_pending(*, now: datetime | None = None) -> int:
    """Auto top-ups whose charge never reached Stripe: send again with the same idempotency
    key while Stripe still remembers it, then give up."""
    now = now or timezone.now()
    horizon = now - timedelta(hours=settings.BILLING_AUTO_TOP_UP_RETRY_H)
    pending = Purchase.objects.filter(
        kind=PurchaseKind.AUTO_TOP_UP,
        status=PurchaseStatus.PENDING,
        stripe_payment_intent_id="",
        created_at__lt=now - timedelta(minutes=1),
    ).select_related("organization", "pack")
    done = 0
    for purchase in pending:
        if purchase.created_at < horizon:
            fail(purchase_id=purchase.pk, reason="The payment provider could not be reached.")
        else:
            charge(purchase=purchase, now=now)
        done += 1
    return done


# --- Low-balance alerts -------------------------------------------------------------------------


def low_balance_check(*, organization_id: int, now: datetime | None = None) -> bool:
    """Email the owners once per crossing below the alert threshold. Returns True if sent."""
    now = now or timezone.now()
    alert = (
        LowBalanceAlert.objects.filter(organization_id=organization_id, enabled=True)
        .select_related("organization")
        .first()
    )
    if alert is None:
        return False
    available = available_credits(organization_id)
    if available is None:
        return False
    if available >= alert.threshold_credits:
        if not alert.armed:
            LowBalanceAlert.objects.filter(pk=alert.pk, armed=False).update(armed=True)
        return False
    with transaction.atomic():
        claimed = LowBalanceAlert.objects.filter(pk=alert.pk, armed=True).update(
            armed=False, last_sent_at=now
        )
        if not claimed:
            return False
        webhook_event_emit(
            organization=alert.organization,
            type=EventType.BALANCE_LOW,
            payload={"available": str(available), "threshold": str(alert.threshold_credits)},
        )
        config = AutoTopUp.objects.filter(organization_id=organization_id, enabled=True).first()
        emails.queue(
            organization=alert.organization,
            kind=emails.LOW_BALANCE,
            dedupe_key=f"low_balance:{alert.pk}:{now.isoformat()}",
            context={
                "threshold": alert.threshold_credits,
                "available": available,
                "auto_top_up": (
                    f"{config.pack.name} when below {config.threshold_credits.normalize():f}"
                    if config
                    else ""
                ),
            },
        )
    return True


def balance_check(*, organization_id: int, now: datetime | None = None) -> None:
    auto_top_up_check(organization_id=organization_id, now=now)
    low_balance_check(organization_id=organization_id, now=now)


def balance_watch(*, now: datetime | None = None) -> int:
    """Beat task: every organization with auto top-up or a low-balance alert on."""
    now = now or timezone.now()
    ids = set(AutoTopUp.objects.filter(enabled=True).values_list("organization_id", flat=True))
    ids |= set(
        LowBalanceAlert.objects.filter(enabled=True).values_list("organization_id", flat=True)
    )
    for organization_id in sorted(ids):
        try:
            balance_check(organization_id=organization_id, now=now)
        except Exception:
            logger.exception("balance check of organization %s failed", organization_id)
    retry_pending(now=now)
    return len(ids)


def balance_check_soon(organization_id: int) -> None:
    """For spenders (e.g. after a capture): check this organization's top-up and alert once the
    current transaction commits, in a Celery task."""
    from credits.tasks import billing_balance_check

    transaction.on_commit(lambda: billing_balance_check.delay(organization_id))
