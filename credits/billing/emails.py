"""Billing emails: plain text (templates `billing/emails/<kind>.txt` and `<kind>_subject.txt`),
sent with Django's send_mail (console backend by default) to the organization's owners.

Each email has a dedupe key (the purchase, the invoice and its attempt, the threshold
crossing…): it is recorded once in `BillingEmail` inside the caller's transaction and sent after
that transaction commits, so a redelivered webhook or a re-run task never sends it twice, and a
rolled-back one sends nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Membership, Organization, Role
from credits.billing.models import BillingEmail

logger = logging.getLogger(__name__)

RECEIPT = "receipt"
PAYMENT_FAILED = "payment_failed"
AUTO_TOP_UP_FAILED = "auto_top_up_failed"
AUTO_TOP_UP_CAPPED = "auto_top_up_capped"
LOW_BALANCE = "low_balance"
OVERAGE_INVOICE = "overage_invoice"
SUBSCRIPTION_DOWNGRADED = "subscription_downgraded"


def owner_emails(organization: Organization) -> list[str]:
    """Owners (admins when an organization has no active owner)."""
    for roles in ((Role.OWNER,), (Role.ADMIN,)):
        emails = list(
            Membership.objects.filter(
                organization=organization, role__in=roles, user__is_active=True
            )
            .order_by("user__email")
            .values_list("user__email", flat=True)
        )
        if emails:
            return emails
    return []


def usd(value) -> str:
    """A USD amount as shown: two decimal places (exact amounts are rounded only here)."""
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _jsonable(value):
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _context(organization: Organization, context: dict) -> dict:
    return {
        "site_name": settings.SITE_NAME,
        "site_url": settings.SITE_URL.rstrip("/"),
        "organization_name": organization.name,
        "organization_slug": organization.slug,
        "currency": settings.STRIPE_CURRENCY,
        **_jsonable(context),
    }


def queue(
    *,
    organization: Organization,
    kind: str,
    dedupe_key: str,
    context: dict,
    recipients: list[str] | None = None,
) -> BillingEmail | None:
    """Record the email once per `dedupe_key` and send it when the current transaction commits.
    Returns the new record, or None when it was already sent (or nobody can receive it)."""
    recipients = recipients if recipients is not None else owner_emails(organization)
    if not recipients:
        logger.warning("no owner to email %s for %s", kind, organization.slug)
        return None
    ctx = _context(organization, context)
    subject = " ".join(render_to_string(f"billing/emails/{kind}_subject.txt", ctx).split())
    email, created = BillingEmail.objects.get_or_create(
        dedupe_key=dedupe_key[:255],
        defaults={
            "organization": organization,
            "kind": kind,
            "recipients": recipients,
            "subject": subject[:255],
            "context": ctx,
        },
    )
    if not created:
        return None
    transaction.on_commit(lambda: deliver(email_id=email.pk))
    return email


def deliver(*, email_id: int) -> bool:
    """Send a recorded email (idempotent: an email already sent is not sent again)."""
    email = BillingEmail.objects.filter(pk=email_id, sent_at__isnull=True).first()
    if email is None:
        return False
    body = render_to_string(f"billing/emails/{email.kind}.txt", email.context)
    try:
        send_mail(
            subject=email.subject,
            message=body.strip() + "\n",
            from_email=None,
            recipient_list=email.recipients,
        )
    except Exception as exc:  # a mail server outage must not fail the billing operation
        logger.exception("billing email %s failed", email.pk)
        BillingEmail.objects.filter(pk=email.pk).update(error=str(exc)[:500])
        return False
    BillingEmail.objects.filter(pk=email.pk).update(sent_at=timezone.now(), error="")
    return True
