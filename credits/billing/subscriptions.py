"""Stripe-managed subscriptions → the organization's Subscription row and its credits.

Every function here is idempotent and commutative with its siblings: the state they converge to
depends on the facts Stripe reports, not on the order webhooks arrive in.

* activation (``checkout.session.completed`` or the subscription's first ``invoice.paid``,
  whichever comes first): put the organization on the plan with the Stripe ids and open a
  period (the plan's credits). The second one finds the subscription linked and does nothing.
* renewal (``invoice.paid`` whose subscription line starts at or after our period end): open
  the next period (the previous period's overage is closed, its plan credits expire, the new
  ones are granted). A replay finds the period already open.
* plan change (``customer.subscription.updated`` with another price): the plan switches at once;
  an upgrade tops the period's plan credits up to the new plan's allowance, a downgrade keeps
  what was granted until the period ends (docs/billing.md).
* past due (``invoice.payment_failed``) and the fallback to free after the grace period;
  cancellation (``customer.subscription.deleted``) → free.

Subscription fields other than through `accounts.services` are written here with a queryset
update and an audit row (status, cancel_at_period_end, plan, Stripe ids).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts import keycache
from accounts.models import Organization, Plan, Subscription, SubscriptionStatus
from accounts.services import FREE_PLAN_SLUG, audit_record, subscription_advance_period
from accounts.services import subscription_start as accounts_subscription_start
from credits import ledger, services
from credits.billing import emails
from credits.billing import gateway as gw
from credits.billing.catalog import plan_for_price
from credits.billing.customers import customer_link
from credits.billing.errors import RetryLater, StripeObjectNotFound, Unprocessable
from credits.billing.models import StripeCustomer, StripeEvent
from credits.billing.stripe_objects import (
    Obj,
    invoice_period,
    invoice_price_id,
    invoice_subscription_metadata,
    metadata,
    ref_id,
    subscription_price_id,
)
from credits.models import CreditGrant, GrantSource, LedgerEntry
from credits.trials.models import OrganizationTrial

logger = logging.getLogger(__name__)

# Stripe's period boundaries and ours differ by the seconds between Stripe's clock and the event
# that opened our period: an invoice line starting within this of our period end is a renewal.
PERIOD_TOLERANCE = timedelta(hours=12)


def _lock(organization: Organization) -> Subscription:
    """The organization's subscription, its row locked (only its row: the plan and the
    organization rows joined in are shared by others and are not ours to lock)."""
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "organization")
        .get(organization=organization)
    )


def _update(sub: Subscription, **fields) -> None:
    Subscription.objects.filter(pk=sub.pk).update(**fields, updated_at=timezone.now())
    keycache.forget_all()  # API keys cache their subscription (accounts/keycache.py)
    for name, value in fields.items():
        setattr(sub, name, value)


def _customer(organization: Organization) -> StripeCustomer | None:
    return StripeCustomer.objects.select_for_update().filter(organization=organization).first()


def subscription_was_deleted(subscription_id: str) -> bool:
    """A `customer.subscription.deleted` for it was received (events are stored first)."""
    return StripeEvent.objects.filter(
        type="customer.subscription.deleted",
        signature_valid=True,
        payload__data__object__id=subscription_id,
    ).exists()


def plan_from(price_id: str, meta: dict) -> Plan | None:
    plan = plan_for_price(price_id)
    if plan is None and meta.get("plan"):
        plan = Plan.objects.filter(slug=meta["plan"]).first()
    return plan


def close_current_period_overage(sub: Subscription, *, until: datetime) -> None:
    """Bill the overage of the period that is cut short (plan replaced or canceled) at the plan
    in force, so it is not billed later at another plan's price."""
    if not sub.plan.overage_enabled and not services.overage_limit_for(
        sub.plan, organization_id=sub.organization_id, at=until
    ):
        return
    account = services.account_for(organization=sub.organization)
    services.overage_close(
        account=account,
        plan=sub.plan,
        period_start=sub.current_period_start,
        period_end=max(until, sub.current_period_start),
    )


def _clear_past_due(organization: Organization, sub: Subscription) -> None:
    if sub.status == SubscriptionStatus.PAST_DUE:
        _update(sub, status=SubscriptionStatus.ACTIVE)
        audit_record(action="subscription.payment_recovered", organization=organization, target=sub)
    StripeCustomer.objects.filter(organization=organization, past_due_since__isnull=False).update(
        past_due_since=None
    )


def _cancel_in_stripe_quietly(subscription_id: str) -> None:
    try:
        gw.get_gateway().subscription_cancel(subscription_id=subscription_id, at_period_end=False)
    except StripeObjectNotFound:
        pass
    except Exception:
        logger.exception("could not cancel replaced Stripe subscription %s", subscription_id)


# --- Activation -------------------------------------------------------------------------------


def activate(
    *,
    organization: Organization,
    plan: Plan,
    customer_id: str,
    subscription_id: str,
    period_start: datetime,
    via: str,
) -> str:
    """Put the organization on `plan`, managed by Stripe subscription `subscription_id`, with a
    period starting `period_start` (its credits are granted). Once per subscription."""
    sub = _lock(organization)
    if sub.stripe_subscription_id == subscription_id:
        return f"subscription {subscription_id} already active ({sub.plan.slug})"
    if subscription_was_deleted(subscription_id):
        return f"subscription {subscription_id} was canceled meanwhile: not activated"
    if customer_id:
        customer_link(organization=organization, customer_id=customer_id)
    old_subscription = sub.stripe_subscription_id
    if period_start <= sub.current_period_start:
        # Our current period began after Stripe's (e.g. a free renewal while this event was on
        # its way): start just after it, so the periods (and their grant keys) stay distinct.
        period_start = sub.current_period_start + timedelta(microseconds=1)
    close_current_period_overage(sub, until=period_start)
    sub = accounts_subscription_start(
        organization=organization,
        plan=plan,
        now=period_start,
        stripe_customer_id=customer_id,
        stripe_subscription_id=subscription_id,
    )
    _clear_past_due(organization, sub)
    _trial_converted(organization, now=period_start, subscription_id=subscription_id)
    # A new subscription: no state of it applied yet (the next subscription event applies).
    StripeCustomer.objects.filter(organization=organization).update(subscription_synced_at=None)
    audit_record(
        action="billing.subscription_activated",
        organization=organization,
        target=sub,
        data={"plan": plan.slug, "subscription": subscription_id, "via": via},
    )
    if old_subscription:
        audit_record(
            action="billing.subscription_replaced",
            organization=organization,
            target=sub,
            data={"old": old_subscription, "new": subscription_id},
        )
        transaction.on_commit(lambda: _cancel_in_stripe_quietly(old_subscription))
    return f"activated {plan.slug} (subscription {subscription_id}, via {via})"


def _trial_converted(organization: Organization, *, now: datetime, subscription_id: str) -> None:
    """A paid subscription replaces a running free trial: the trial is marked ended (so
    `trials_end_due` never downgrades the organization) and the conversion audited."""
    trial = OrganizationTrial.objects.filter(
        organization=organization, ended_at__isnull=True
    ).first()
    if trial is None:
        return
    OrganizationTrial.objects.filter(pk=trial.pk).update(ended_at=now)
    audit_record(
        action="trial.converted",
        organization=organization,
        target=trial,
        data={"subscription": subscription_id},
    )


def checkout_completed(*, organization: Organization, session: Obj, event_created: datetime) -> str:
    meta = metadata(session)
    slug = meta.get("plan")
    plan = Plan.objects.filter(slug=slug).first() if slug else None
    if plan is None:
        raise Unprocessable(
            f"Unknown plan {slug!r} (metadata.plan of Checkout session {session['id']})."
        )
    subscription_id = ref_id(session.get("subscription"))
    if not subscription_id:
        raise Unprocessable(f"Checkout session {session['id']} has no subscription.")
    return activate(
        organization=organization,
        plan=plan,
        customer_id=ref_id(session.get("customer")),
        subscription_id=subscription_id,
        period_start=event_created,
        via="checkout.session.completed",
    )


# --- Invoices ---------------------------------------------------------------------------------


def invoice_paid(
    *, organization: Organization, invoice: Obj, subscription_id: str, now: datetime
) -> str:
    """An invoice of a subscription was paid: activation (first invoice), renewal (the next
    period), or nothing new (prorations, replays); a past-due subscription is active again."""
    sub = _lock(organization)
    start, _end = invoice_period(invoice)
    price_id = invoice_price_id(invoice)
    if sub.stripe_subscription_id != subscription_id:
        if subscription_was_deleted(subscription_id):
            return f"subscription {subscription_id} was canceled: invoice ignored"
        if sub.stripe_subscription_id:
            raise RetryLater(
                f"{organization.slug} is on subscription {sub.stripe_subscription_id}, not "
                f"{subscription_id}: waiting for its checkout or the old one's cancellation."
            )
        plan = plan_from(price_id, invoice_subscription_metadata(invoice))
        if plan is None:
            raise Unprocessable(
                f"No plan has Stripe price {price_id!r} (invoice {invoice.get('id')}); "
                "run manage.py stripe_sync."
            )
        note = activate(
            organization=organization,
            plan=plan,
            customer_id=ref_id(invoice.get("customer")),
            subscription_id=subscription_id,
            period_start=start or now,
            via="invoice.paid",
        )
    else:
        plan = plan_for_price(price_id)
        if start is not None and start >= sub.current_period_end - PERIOD_TOLERANCE:
            if plan is not None and plan != sub.plan:
                change_plan(sub, plan, now=now, top_up=False)
            advanced = subscription_advance_period(
                subscription=sub, now=max(start, sub.current_period_end)
            )
            note = (
                f"renewed: period from {advanced.current_period_start:%Y-%m-%d}"
                if advanced
                else "period already open"
            )
        else:
            note = "no new period (first invoice, proration or replay)"
        sub.refresh_from_db()
        _clear_past_due(organization, sub)
    amount_paid = int(invoice.get("amount_paid") or 0)
    if amount_paid > 0:
        emails.queue(
            organization=organization,
            kind=emails.RECEIPT,
            dedupe_key=f"receipt:invoice:{invoice.get('id')}",
            context={
                "description": f"{sub.plan.name} plan subscription",
                "amount": emails.usd(Decimal(amount_paid) / 100),
                "date": now,
                "reference": invoice.get("number") or invoice.get("id"),
                "invoice_url": invoice.get("hosted_invoice_url") or "",
            },
        )
    return note


def invoice_payment_failed(
    *, organization: Organization, invoice: Obj, subscription_id: str, now: datetime
) -> str:
    sub = _lock(organization)
    if sub.stripe_subscription_id != subscription_id:
        return f"invoice of subscription {subscription_id}, not the organization's current one"
    if sub.status != SubscriptionStatus.PAST_DUE:
        _update(sub, status=SubscriptionStatus.PAST_DUE)
        audit_record(
            action="subscription.past_due",
            organization=organization,
            target=sub,
            data={"invoice": invoice.get("id")},
        )
    StripeCustomer.objects.filter(organization=organization, past_due_since__isnull=True).update(
        past_due_since=now
    )
    customer = StripeCustomer.objects.filter(organization=organization).first()
    since = customer.past_due_since if customer and customer.past_due_since else now
    grace_end = since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
    emails.queue(
        organization=organization,
        kind=emails.PAYMENT_FAILED,
        dedupe_key=f"payment_failed:invoice:{invoice.get('id')}:{invoice.get('attempt_count')}",
        context={
            "description": f"{sub.plan.name} plan subscription",
            "amount": emails.usd(Decimal(int(invoice.get("amount_due") or 0)) / 100),
            "reason": (invoice.get("last_finalization_error") or {}).get("message")
            or "The card was declined.",
            "grace_days": max(0, (grace_end - now).days),
            "plan_name": sub.plan.name,
            "invoice_url": invoice.get("hosted_invoice_url") or "",
        },
    )
    return f"past due since {since:%Y-%m-%d %H:%M}"


# --- Subscription objects ---------------------------------------------------------------------


def _granted_plan_credits_this_period(sub: Subscription) -> Decimal:
    account = services.account_for(organization=sub.organization)
    total = CreditGrant.objects.filter(
        account=account,
        source=GrantSource.PLAN,
        expires_at=sub.current_period_end,
    ).aggregate(s=Sum("amount"))["s"]
    return total or Decimal(0)


def change_plan(sub: Subscription, plan: Plan, *, now: datetime, top_up: bool = True) -> None:
    """Switch plans within the current period: limits and the overage allowance follow the new
    plan at once; an upgrade tops the period's plan credits up to the new plan's monthly
    allowance (expiring with the period); a downgrade takes nothing back."""
    old = sub.plan
    if old.pk == plan.pk:
        return
    _update(sub, plan=plan)
    account = services.account_for(organization=sub.organization)
    ledger.account_set_overage_limit(
        account=account,
        overage_limit=services.overage_limit_for(plan, organization_id=sub.organization_id),
    )
    audit_record(
        action="subscription.plan_changed",
        organization=sub.organization,
        target=sub,
        data={"from": old.slug, "to": plan.slug, "period_end": sub.current_period_end.isoformat()},
    )
    if not top_up or sub.current_period_end <= now + timedelta(minutes=1):
        return
    granted = _granted_plan_credits_this_period(sub)
    extra = plan.monthly_credits - granted
    if extra <= 0:
        return
    key = (
        f"plan-upgrade:{sub.pk}:{sub.current_period_start.isoformat()}:{plan.slug}:"
        f"{granted.normalize():f}"
    )
    if LedgerEntry.objects.filter(account=account, idempotency_key=key).exists():
        return
    ledger.grant_create(
        account=account,
        amount=extra,
        source=GrantSource.PLAN,
        idempotency_key=key,
        expires_at=sub.current_period_end,
        reference=f"{plan.slug} upgrade {sub.current_period_start:%Y-%m-%d}",
        reason=f"upgrade to {plan.name}: plan credits topped up for the current period",
        now=now,
    )


_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.PAST_DUE,
    "unpaid": SubscriptionStatus.PAST_DUE,
}


def subscription_updated(
    *, organization: Organization, subscription: Obj, event_created: datetime, now: datetime
) -> str:
    """Apply a subscription's state (plan, status, cancel at period end) unless a newer state
    was applied already (events arrive out of order)."""
    subscription_id = subscription["id"]
    sub = _lock(organization)
    status = subscription.get("status") or ""
    if sub.stripe_subscription_id != subscription_id:
        if sub.stripe_subscription_id or status not in _STATUS:
            return f"subscription {subscription_id} is not the organization's current one"
        raise RetryLater(
            f"Subscription {subscription_id} is not activated yet: waiting for "
            "checkout.session.completed or its first invoice.paid."
        )
    if status in ("canceled", "incomplete_expired"):
        return subscription_deleted(organization=organization, subscription=subscription, now=now)
    customer = _customer(organization)
    synced_at = customer.subscription_synced_at if customer is not None else None
    if synced_at is not None and event_created < synced_at:
        return "older than the subscription state already applied: skipped"
    notes = []
    plan = plan_from(subscription_price_id(subscription), {})
    if plan is not None and plan.pk != sub.plan_id:
        notes.append(f"plan {sub.plan.slug} → {plan.slug}")
        change_plan(sub, plan, now=now)
    cancel = bool(subscription.get("cancel_at_period_end"))
    if cancel != sub.cancel_at_period_end:
        _update(sub, cancel_at_period_end=cancel)
        audit_record(
            action="subscription.cancel_at_period_end" if cancel else "subscription.resumed",
            organization=organization,
            target=sub,
        )
        notes.append("cancels at period end" if cancel else "no longer cancels")
    new_status = _STATUS.get(status)
    if new_status is not None and new_status != sub.status:
        if new_status == SubscriptionStatus.PAST_DUE:
            _update(sub, status=new_status)
            StripeCustomer.objects.filter(
                organization=organization, past_due_since__isnull=True
            ).update(past_due_since=now)
            audit_record(action="subscription.past_due", organization=organization, target=sub)
        else:
            _update(sub, status=new_status)
            StripeCustomer.objects.filter(organization=organization).update(past_due_since=None)
        notes.append(f"status {new_status}")
    StripeCustomer.objects.filter(organization=organization).update(
        subscription_synced_at=event_created
    )
    return "; ".join(notes) or "nothing changed"


def subscription_deleted(*, organization: Organization, subscription: Obj, now: datetime) -> str:
    sub = _lock(organization)
    if sub.stripe_subscription_id != subscription["id"]:
        return f"subscription {subscription['id']} is not the organization's current one"
    downgrade_to_free(
        sub,
        now=now,
        reason=f"Your {sub.plan.name} subscription was canceled.",
        dedupe=f"downgraded:{subscription['id']}",
    )
    return "canceled: moved to the free plan"


def downgrade_to_free(sub: Subscription, *, now: datetime, reason: str, dedupe: str) -> None:
    """The organization leaves its paid plan for free: the cut-short period's overage is billed
    at the old plan; the plan credits already granted stay until their period's end; a free
    period starts now. Caller holds the subscription lock."""
    organization = sub.organization
    old_plan, old_subscription = sub.plan, sub.stripe_subscription_id
    free = Plan.objects.get(slug=FREE_PLAN_SLUG)
    close_current_period_overage(sub, until=now)
    sub = accounts_subscription_start(organization=organization, plan=free, now=now)
    _update(sub, stripe_subscription_id="", status=SubscriptionStatus.ACTIVE)
    StripeCustomer.objects.filter(organization=organization).update(past_due_since=None)
    audit_record(
        action="billing.downgraded_to_free",
        organization=organization,
        target=sub,
        data={"from": old_plan.slug, "subscription": old_subscription, "reason": reason},
    )
    emails.queue(
        organization=organization,
        kind=emails.SUBSCRIPTION_DOWNGRADED,
        dedupe_key=dedupe,
        context={"reason": reason, "plan_name": old_plan.name},
    )


def downgrade_past_due(*, now: datetime | None = None) -> int:
    """Beat task: subscriptions past due for longer than the grace period are canceled in
    Stripe and the organization falls back to the free plan. Idempotent."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS)
    done = 0
    for customer in StripeCustomer.objects.filter(past_due_since__lte=cutoff).select_related(
        "organization"
    ):
        organization = customer.organization
        with transaction.atomic():
            sub = _lock(organization)
            subscription_id = sub.stripe_subscription_id
            if sub.status != SubscriptionStatus.PAST_DUE or not subscription_id:
                StripeCustomer.objects.filter(pk=customer.pk).update(past_due_since=None)
                continue
        try:
            gw.get_gateway().subscription_cancel(
                subscription_id=subscription_id, at_period_end=False
            )
        except StripeObjectNotFound:
            pass
        except Exception:
            logger.exception("could not cancel past-due subscription %s", subscription_id)
            continue
        with transaction.atomic():
            sub = _lock(organization)
            if sub.status != SubscriptionStatus.PAST_DUE or (
                sub.stripe_subscription_id != subscription_id
            ):
                continue
            downgrade_to_free(
                sub,
                now=now,
                reason=(
                    f"The payment for your {sub.plan.name} plan failed and was not recovered "
                    f"within {settings.BILLING_PAST_DUE_GRACE_DAYS} days."
                ),
                dedupe=f"downgraded:{subscription_id}",
            )
            done += 1
    return done
