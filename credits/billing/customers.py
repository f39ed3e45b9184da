"""The link between an organization and its Stripe customer (one each)."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from accounts.models import Organization
from credits.billing import gateway as gw
from credits.billing.emails import owner_emails
from credits.billing.models import StripeCustomer

logger = logging.getLogger(__name__)


def customer_for(*, organization: Organization) -> StripeCustomer | None:
    return StripeCustomer.objects.filter(organization=organization).first()


def organization_for_customer(customer_id: str | None) -> Organization | None:
    if not customer_id:
        return None
    link = (
        StripeCustomer.objects.filter(stripe_customer_id=customer_id)
        .select_related("organization")
        .first()
    )
    return link.organization if link is not None else None


def customer_ensure(*, organization: Organization) -> StripeCustomer:
    """The organization's Stripe customer, created in Stripe (idempotently, keyed by the
    organization) and linked here when missing."""
    existing = customer_for(organization=organization)
    if existing is not None:
        return existing
    emails = owner_emails(organization)
    customer = gw.get_gateway().customer_create(
        name=organization.name,
        email=emails[0] if emails else "",
        metadata={"organization": organization.slug, "organization_id": str(organization.pk)},
        idempotency_key=f"customer:{organization.pk}:{organization.slug}",
    )
    return customer_link(
        organization=organization, customer_id=customer["id"], email=customer.get("email") or ""
    )


def customer_link(
    *, organization: Organization, customer_id: str, email: str = ""
) -> StripeCustomer:
    """Record `customer_id` as the organization's customer unless it already has one (the first
    link wins; a different id is logged, not applied)."""
    existing = customer_for(organization=organization)
    if existing is None:
        try:
            with transaction.atomic():
                return StripeCustomer.objects.create(
                    organization=organization, stripe_customer_id=customer_id, email=email
                )
        except IntegrityError:
            existing = customer_for(organization=organization)
            if existing is None:  # the customer id belongs to another organization
                raise
    if existing.stripe_customer_id != customer_id:
        logger.warning(
            "organization %s is linked to %s; Stripe reported customer %s",
            organization.slug,
            existing.stripe_customer_id,
            customer_id,
        )
    return existing
