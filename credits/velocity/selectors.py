"""Spend velocity, read side: an account's spend in the last hour against its pause threshold
(`credits.velocity.services` explains the rule), and the billing page's status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from credits.models import CreditAccount, CreditHold, HoldStatus
from credits.velocity.models import VelocityPause

HOURS_TRAILING = 7 * 24


def multiplier() -> Decimal:
    return Decimal(str(getattr(settings, "CREDITS_VELOCITY_MULTIPLIER", 10)))


def floor_credits() -> Decimal:
    return Decimal(str(getattr(settings, "CREDITS_VELOCITY_FLOOR_CREDITS", 1000)))


def confirm_hours() -> int:
    return int(getattr(settings, "CREDITS_VELOCITY_CONFIRM_HOURS", 24))


@dataclass(frozen=True)
class Velocity:
    last_hour: Decimal
    hourly_average: Decimal
    threshold: Decimal

    @property
    def exceeded(self) -> bool:
        return self.last_hour > self.threshold


def velocity_of(*, account: CreditAccount, now: datetime) -> Velocity:
    """The account's spend in the last hour against its threshold: one aggregate query."""
    hour, week = now - timedelta(hours=1), now - timedelta(hours=1 + HOURS_TRAILING)
    spent = Coalesce("captured_amount", "amount")
    zero = Value(Decimal(0), output_field=DecimalField())
    totals = (
        CreditHold.objects.filter(account=account, created_at__gte=week)
        .exclude(status=HoldStatus.RELEASED)
        .aggregate(
            last=Coalesce(Sum(spent, filter=Q(created_at__gte=hour)), zero),
            trailing=Coalesce(Sum(spent, filter=Q(created_at__lt=hour)), zero),
        )
    )
    average = (totals["trailing"] / HOURS_TRAILING).quantize(Decimal("0.001"))
    return _velocity(totals["last"], average)


@dataclass(frozen=True)
class VelocitySnapshot:
    """What acceptance needs in one query: the recorded pause (if any) and the spend."""

    velocity: Velocity
    paused_at: datetime | None
    paused_velocity: Velocity | None
    exempt_until: datetime | None


_SNAPSHOT_SQL = """
SELECT p.paused_at, p.last_hour_credits, p.hourly_average, p.exempt_until,
       s.last_hour, s.trailing
FROM (
    SELECT coalesce(sum(coalesce(h.captured_amount, h.amount))
                    FILTER (WHERE h.created_at >= %(hour)s), 0) AS last_hour,
           coalesce(sum(coalesce(h.captured_amount, h.amount))
                    FILTER (WHERE h.created_at < %(hour)s), 0) AS trailing
    FROM credits_credithold h
    WHERE h.account_id = %(account)s AND h.created_at >= %(week)s AND h.status <> 'released'
) s
LEFT JOIN credits_velocitypause p ON p.organization_id = %(organization)s
"""


def _velocity(last_hour: Decimal, average: Decimal) -> Velocity:
    return Velocity(
        last_hour=last_hour,
        hourly_average=average,
        threshold=max(multiplier() * average, floor_credits()),
    )


def velocity_snapshot(*, account: CreditAccount, now: datetime) -> VelocitySnapshot:
    """The account's spend in the last hour and its organization's pause row: one query (it
    runs on every paid acceptance)."""
    params = {
        "hour": now - timedelta(hours=1),
        "week": now - timedelta(hours=1 + HOURS_TRAILING),
        "account": account.pk,
        "organization": account.organization_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_SQL, params)
        paused_at, paused_last, paused_average, exempt_until, last, trailing = cursor.fetchone()
    average = (Decimal(trailing) / HOURS_TRAILING).quantize(Decimal("0.001"))
    return VelocitySnapshot(
        velocity=_velocity(Decimal(last), average),
        paused_at=paused_at,
        paused_velocity=(
            _velocity(paused_last or Decimal(0), paused_average or Decimal(0))
            if paused_at is not None
            else None
        ),
        exempt_until=exempt_until,
    )


def velocity_status(*, organization: Organization, now: datetime | None = None) -> dict:
    """For the billing page: is paid generation paused (recorded, or the last hour already over
    the threshold), with the figures."""
    now = now or timezone.now()
    state = VelocityPause.objects.filter(organization=organization).first()
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is None:
        return {"paused": False}
    velocity = velocity_of(account=account, now=now)
    exempt = state is not None and state.exempt_until is not None and state.exempt_until > now
    paused = (state is not None and state.paused_at is not None) or (
        velocity.exceeded and not exempt
    )
    return {
        "paused": paused,
        "velocity": velocity,
        "exempt_until": state.exempt_until if exempt else None,
    }
