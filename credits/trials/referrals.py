"""Referral credits (issue 15): every organization has a referral code (made on first use);
an organization that signs up through `?ref=CODE` and its referrer each get
`settings.REFERRAL_CREDITS` credits (source `referral`, no expiry) when the new organization is
created. Abuse limits: an organization cannot refer itself, nor can anyone who belongs to the
referrer (the same person making a second organization); one referral per referred
organization (a unique row); at most `settings.REFERRALS_PER_MONTH` paid referrals per referrer
per calendar month (counted under a lock on the referrer's code). A refused referral writes
nothing and never fails the sign-up.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Organization
from accounts.services import audit_record
from credits.models import GrantSource
from credits.services import organization_grant_in_transaction
from credits.trials.models import Referral, ReferralCode

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def referral_code_for(*, organization: Organization) -> ReferralCode:
    """The organization's referral code, made on first use."""
    existing = ReferralCode.objects.filter(organization=organization).first()
    if existing is not None:
        return existing
    for _ in range(5):
        code = "".join(secrets.choice(ALPHABET) for _ in range(8))
        try:
            with transaction.atomic():
                return ReferralCode.objects.create(organization=organization, code=code)
        except IntegrityError:  # a code collision, or a concurrent first use
            existing = ReferralCode.objects.filter(organization=organization).first()
            if existing is not None:
                return existing
    raise RuntimeError("could not make a unique referral code")


def referral_link(*, organization: Organization) -> str:
    """The sign-up link that credits this organization (its code made on first use)."""
    code = referral_code_for(organization=organization).code
    return f"{settings.SITE_URL.rstrip('/')}{reverse('signup')}?ref={code}"


@transaction.atomic(durable=True)
def _record(*, referred: Organization, code: str, now: datetime) -> Referral | None:
    ref = (
        ReferralCode.objects.select_for_update()
        .select_related("organization")
        .filter(code=code.strip().upper()[:16])
        .first()
    )
    if ref is None or ref.organization_id == referred.pk:
        return None
    referrer = ref.organization
    referred_users = Membership.objects.filter(organization=referred).values("user")
    if Membership.objects.filter(organization=referrer, user__in=referred_users).exists():
        return None  # the same person on both sides
    if Referral.objects.filter(referred=referred).exists():
        return None
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    this_month = Referral.objects.filter(referrer=referrer, created_at__gte=month_start)
    if this_month.count() >= settings.REFERRALS_PER_MONTH:
        return None
    amount = settings.REFERRAL_CREDITS
    grants = {
        side: organization_grant_in_transaction(
            organization=org,
            amount=amount,
            source=GrantSource.REFERRAL,
            reason=reason,
            idempotency_key=f"referral:{referred.pk}:{side}",
        )
        for side, org, reason in (
            ("referrer", referrer, f"Referral of {referred.name}"),
            ("referred", referred, "Referral welcome credits"),
        )
    }
    referral = Referral.objects.create(
        referrer=referrer,
        referred=referred,
        referrer_grant=grants["referrer"],
        referred_grant=grants["referred"],
        created_at=now,
    )
    for org in (referrer, referred):
        audit_record(
            action="referral.credited",
            organization=org,
            target=referral,
            data={"referrer": referrer.pk, "referred": referred.pk, "credits": str(amount)},
        )
    return referral


def referral_record(
    *, referred: Organization, code: str, now: datetime | None = None
) -> Referral | None:
    """Credit a sign-up through `code` (see the module docstring). Returns None — writing
    nothing — for an unknown code, a self-referral, a repeat or a referrer over its cap."""
    if not code or not code.strip() or settings.REFERRAL_CREDITS <= 0:
        return None
    try:
        return _record(referred=referred, code=code, now=now or timezone.now())
    except IntegrityError:  # a concurrent referral of the same organization won
        return None
