"""Periodic credits work, scheduled by beat (CELERY_BEAT_SCHEDULE in config/settings/base.py).

Thin wrappers over `credits.services` and the billing modules. Each is idempotent by
construction: it acts on what is due *now* and every action leaves nothing due, so a re-run, an
overlapping run on another worker or a redelivery after a crash (`acks_late`) finds nothing
left to do.
"""

from __future__ import annotations

import logging

from celery import shared_task

from credits import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def expire_grants() -> int:
    """Expire the unspent rest of every grant past its `expires_at` (one expiry entry each)."""
    count = services.grants_expire_due()
    if count:
        logger.info("expired %d grant(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def release_stale_holds() -> int:
    """Release holds past their expiry (jobs stuck past the timeout) back to their grants."""
    count = services.holds_release_stale()
    if count:
        logger.info("released %d stale hold(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def renew_subscriptions() -> int:
    """Open the next period of subscriptions whose period ended (not Stripe-managed): closes
    the old period's overage, expires its plan credits, grants the new period's."""
    count = services.subscriptions_renew_due()
    if count:
        logger.info("renewed %d subscription(s)", count)
    return count


# --- Billing (Stripe) -------------------------------------------------------------------------


@shared_task(acks_late=True, ignore_result=True)
def billing_retry_failed_events() -> int:
    """Process again webhook events that failed (e.g. arrived before the one they depend on),
    with backoff, within the configured attempts and age."""
    from credits.billing import webhooks

    count = webhooks.retry_failed()
    if count:
        logger.info("processed %d failed stripe event(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def billing_prune_webhook_refusals() -> int:
    """Delete the trace of refused webhook deliveries past its retention."""
    from credits.billing import webhooks

    count = webhooks.refusals_prune()
    if count:
        logger.info("pruned %d refused stripe webhook trace row(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def billing_invoice_overages() -> int:
    """Turn each open overage record into one Stripe invoice (idempotent per record)."""
    from credits.billing import overage

    count = overage.invoice_open_overages()
    if count:
        logger.info("invoiced %d overage record(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def billing_balance_watch() -> int:
    """Auto top-ups and low-balance alerts of every organization that has them on."""
    from credits.billing import topup

    return topup.balance_watch()


@shared_task(acks_late=True, ignore_result=True)
def billing_balance_check(organization_id: int) -> None:
    """One organization's auto top-up and low-balance alert (queued after spending)."""
    from credits.billing import topup

    topup.balance_check(organization_id=organization_id)


@shared_task(acks_late=True, ignore_result=True)
def billing_downgrade_past_due() -> int:
    """Subscriptions past due beyond the grace period fall back to the free plan."""
    from credits.billing import subscriptions

    count = subscriptions.downgrade_past_due()
    if count:
        logger.info("downgraded %d past-due subscription(s) to free", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def credits_trials_end_due() -> int:
    """Free trials past their end return the organization to the free plan."""
    from credits.trials import services as trials

    count = trials.trials_end_due()
    if count:
        logger.info("ended %d free trial(s)", count)
    return count


@shared_task(acks_late=True, ignore_result=True)
def credits_velocity_watch() -> int:
    """Pause paid generation of organizations spending far above their usual rate."""
    from credits.velocity import services as velocity

    paused = velocity.velocity_watch()
    if paused:
        logger.warning("velocity pause for %d organization(s): %s", len(paused), paused)
    return len(paused)
