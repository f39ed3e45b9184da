"""Spend velocity: pause an organization's paid generation when its spend in the last hour
exceeds `CREDITS_VELOCITY_MULTIPLIER` × its trailing 7-day hourly average (and the floor
`CREDITS_VELOCITY_FLOOR_CREDITS`, so a small or new organization is not paused by a normal
burst) — until an owner (billing page) or staff (admin action) confirms; after a confirmation
the check steps aside for `CREDITS_VELOCITY_CONFIRM_HOURS`.

Spend = the credits of the account's holds that were not released (captured: what was
charged; open: what is held), by their creation time. The trailing window is the 7 days before
the last hour. Two places look:

* `velocity_check`, at acceptance (`credits.services.spend_authorize`, after budgets, before
  credits): one aggregate query for this account; refuses with 429 `quota_exceeded`,
  `limit: velocity`. Its refusal rolls back with the submission, so it writes nothing;
* `velocity_watch` (beat, every minute): one set-based INSERT … SELECT … ON CONFLICT over every
  account records the pause, so it stays until confirmed even when the hour has passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership, Organization
from accounts.services import audit_record
from config.errors import PermissionDenied, QuotaExceeded, limit_details
from credits.models import CreditAccount
from credits.velocity.models import VelocityPause
from credits.velocity.selectors import (
    HOURS_TRAILING,
    Velocity,
    confirm_hours,
    floor_credits,
    multiplier,
    velocity_snapshot,
)

PAUSED = (
    "Paid generation is paused: credits spent in the last hour are far above your usual rate. "
    "An owner or admin can resume it on the billing page."
)


def velocity_check(
    *, organization: Organization, account: CreditAccount, amount: Decimal, now: datetime
) -> None:
    """At acceptance: refuse paid work while the organization is paused, or once its spend in
    the last hour is past the threshold (unless an owner confirmed recently). A pause, not a
    cap: the job that crosses the threshold is accepted (the overshoot is at most one job), the
    next is refused, and `velocity_watch` records the pause."""
    if amount <= 0:
        return
    snapshot = velocity_snapshot(account=account, now=now)
    if snapshot.paused_velocity is not None:
        raise _refusal(snapshot.paused_velocity)
    if snapshot.exempt_until is not None and snapshot.exempt_until > now:
        return
    if snapshot.velocity.exceeded:
        raise _refusal(snapshot.velocity)


def _refusal(velocity: Velocity) -> QuotaExceeded:
    return QuotaExceeded(
        PAUSED,
        reason="spend_velocity",
        **limit_details(name="velocity", value=velocity.threshold, used=velocity.last_hour),
    )


_WATCH_SQL = """
INSERT INTO credits_velocitypause
    (organization_id, paused_at, last_hour_credits, hourly_average, updated_at)
SELECT a.organization_id, %(now)s, s.last_hour, round(s.trailing / %(hours)s, 3), %(now)s
FROM (
    SELECT h.account_id,
        coalesce(sum(coalesce(h.captured_amount, h.amount))
                 FILTER (WHERE h.created_at >= %(hour)s), 0) AS last_hour,
        coalesce(sum(coalesce(h.captured_amount, h.amount))
                 FILTER (WHERE h.created_at < %(hour)s), 0) AS trailing
    FROM credits_credithold h
    WHERE h.created_at >= %(week)s AND h.status <> 'released'
    GROUP BY h.account_id
) s
JOIN credits_creditaccount a ON a.id = s.account_id
WHERE s.last_hour > greatest(%(mult)s * round(s.trailing / %(hours)s, 3), %(floor)s)
ON CONFLICT (organization_id) DO UPDATE SET
    paused_at = EXCLUDED.paused_at,
    last_hour_credits = EXCLUDED.last_hour_credits,
    hourly_average = EXCLUDED.hourly_average,
    updated_at = EXCLUDED.updated_at
WHERE credits_velocitypause.paused_at IS NULL
  AND (credits_velocitypause.exempt_until IS NULL
       OR credits_velocitypause.exempt_until <= %(now)s)
RETURNING organization_id
"""


def velocity_watch(*, now: datetime | None = None) -> list[int]:
    """Record a pause for every organization over its threshold (one set-based statement;
    idempotent: paused or recently confirmed organizations are left alone). Returns the ids of
    the organizations paused now, each audited."""
    now = now or timezone.now()
    params = {
        "now": now,
        "hour": now - timedelta(hours=1),
        "week": now - timedelta(hours=1 + HOURS_TRAILING),
        "hours": HOURS_TRAILING,
        "mult": multiplier(),
        "floor": floor_credits(),
    }
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_WATCH_SQL, params)
            paused = [row[0] for row in cursor.fetchall()]
        if not paused:
            return paused
        for state in VelocityPause.objects.filter(organization_id__in=paused).select_related(
            "organization"
        ):
            audit_record(
                action="credits.velocity_paused",
                organization=state.organization,
                target=state,
                data={
                    "last_hour": str(state.last_hour_credits),
                    "hourly_average": str(state.hourly_average),
                },
            )
    return paused


@transaction.atomic(durable=True)
def velocity_resume(*, organization: Organization, actor, now: datetime | None = None) -> None:
    """An owner or admin (or staff, `actor` a staff user or None) confirms the spend: paid
    generation resumes and the check steps aside for `CREDITS_VELOCITY_CONFIRM_HOURS`."""
    now = now or timezone.now()
    is_staff = actor is None or getattr(actor, "is_staff", False)
    if not is_staff:
        membership = Membership.objects.filter(organization=organization, user=actor).first()
        if membership is None or not membership.can_manage:
            raise PermissionDenied("Only owners and admins can resume paid generation.")
    state, _ = VelocityPause.objects.select_for_update().get_or_create(organization=organization)
    was_paused = state.paused_at is not None
    state.paused_at = None
    state.confirmed_at = now
    state.confirmed_by = actor if actor is not None and actor.is_authenticated else None
    state.exempt_until = now + timedelta(hours=confirm_hours())
    state.updated_at = now
    state.save()
    audit_record(
        action="credits.velocity_resumed",
        organization=organization,
        actor=actor,
        target=state,
        data={"was_paused": was_paused, "exempt_until": state.exempt_until.isoformat()},
    )
