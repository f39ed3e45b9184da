"""Redeeming promo codes (the only writer of `PromoCode.redemptions_count` and of
`PromoRedemption` rows). Credits move through `credits.services` (the ledger), source `promo`.

One durable transaction per redemption: a conditional UPDATE takes one unit of the code's
limit (and locks the code's row, so redemptions of one code queue there), a unique
(code, organization, seq) row records it, the grant and an audit row follow. Under any
concurrency a code with `max_redemptions` N grants at most N times and an organization at most
`max_per_organization` times; a refusal writes nothing.

What a refusal says: a code that does not exist, is inactive, outside its validity window or
used up is "not valid" — one message, so nobody learns which codes exist. Only an organization
that already redeemed a code is told so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import APIKey, Membership, Organization
from accounts.services import audit_record
from config.errors import PermissionDenied, RateLimited, ValidationError
from credits.models import GrantSource
from credits.promos import throttle
from credits.promos.models import PromoCode, PromoRedemption, normalize_code
from credits.services import organization_grant_in_transaction

NOT_VALID = "This code is not valid."
ALREADY = "Your organization has already redeemed this code."
MANAGERS_ONLY = "Only owners and admins can redeem codes."


def _not_valid() -> ValidationError:
    return ValidationError(NOT_VALID, errors={"code": [NOT_VALID]})


def _grant_expiry(code: PromoCode, now: datetime) -> datetime | None:
    candidates = [code.grant_expires_at] if code.grant_expires_at else []
    if code.grant_days:
        candidates.append(now + timedelta(days=code.grant_days))
    return min(candidates) if candidates else None


def _usable(now: datetime) -> Q:
    """The codes that can be redeemed at `now` (the conditional UPDATE's condition)."""
    return (
        Q(active=True)
        & (Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        & (Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        & (Q(grant_expires_at__isnull=True) | Q(grant_expires_at__gt=now))
        & (Q(max_redemptions__isnull=True) | Q(redemptions_count__lt=F("max_redemptions")))
    )


@transaction.atomic(durable=True)
def _redeem(
    *,
    organization: Organization,
    code: str,
    actor,
    api_key: APIKey | None,
    now: datetime,
) -> PromoRedemption:
    promo = PromoCode.objects.filter(code=code).first()
    if promo is None:
        raise _not_valid()
    # One unit of the limit, or nothing: also locks the code's row until this transaction ends.
    if not PromoCode.objects.filter(_usable(now), pk=promo.pk).update(
        redemptions_count=F("redemptions_count") + 1
    ):
        raise _not_valid()
    promo.refresh_from_db()
    done = PromoRedemption.objects.filter(promo_code=promo, organization=organization).count()
    if done >= promo.max_per_organization:
        raise ValidationError(ALREADY, errors={"code": [ALREADY]})
    seq = done + 1
    grant = organization_grant_in_transaction(
        organization=organization,
        amount=promo.credits,
        source=GrantSource.PROMO,
        reason=f"Promo code {promo.code}",
        idempotency_key=f"promo:{promo.pk}:{organization.pk}:{seq}",
        actor=actor,
        expires_at=_grant_expiry(promo, now),
    )
    redemption = PromoRedemption.objects.create(
        promo_code=promo,
        organization=organization,
        seq=seq,
        grant=grant,
        redeemed_by=actor if actor is not None and actor.is_authenticated else None,
        redeemed_at=now,
    )
    audit_record(
        action="promo.redeemed",
        organization=organization,
        actor=actor,
        actor_api_key=api_key,
        target=redemption,
        data={"code": promo.code, "credits": str(promo.credits), "grant": grant.pk},
    )
    return redemption


def promo_redeem(
    *,
    organization: Organization,
    code: str,
    actor=None,
    api_key: APIKey | None = None,
    now: datetime | None = None,
) -> PromoRedemption:
    """Redeem `code` for `organization`: by a signed-in owner/admin (`actor`) or an API key.
    Raises ValidationError (not valid / already redeemed: nothing written), PermissionDenied,
    or RateLimited while the organization is locked out after too many wrong codes."""
    if api_key is None:
        membership = (
            Membership.objects.filter(organization=organization, user=actor).first()
            if actor is not None and actor.is_authenticated
            else None
        )
        if membership is None or not membership.can_manage:
            raise PermissionDenied(MANAGERS_ONLY)
    wait = throttle.promo_lock_remaining(organization_id=organization.pk)
    if wait:
        raise _throttled(wait)
    normalized = normalize_code(code)
    if not normalized or len(normalized) > PromoCode._meta.get_field("code").max_length:
        throttle.promo_failure_record(organization_id=organization.pk)
        raise _not_valid()
    try:
        return _redeem(
            organization=organization,
            code=normalized,
            actor=actor,
            api_key=api_key,
            now=now or timezone.now(),
        )
    except IntegrityError:  # the same organization's concurrent redemption won the unique row
        raise ValidationError(ALREADY, errors={"code": [ALREADY]}) from None
    except ValidationError as exc:
        if exc.detail == NOT_VALID:
            wait = throttle.promo_failure_record(organization_id=organization.pk)
            if wait:
                raise _throttled(wait) from None
        raise


def _throttled(seconds: int) -> RateLimited:
    minutes = max(1, -(-seconds // 60))
    return RateLimited(
        f"Too many attempts; try again in {minutes} minute{'s' if minutes != 1 else ''}.",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )
