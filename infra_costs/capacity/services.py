"""Writes of the capacity plan: "apply as schedule" — a recommendation's set-points become the
pool's new schedule version, with who and why (the fleet's autoscaler and the unit-cost
report's planned uptime follow the version in force; earlier versions are kept unchanged)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from infra_costs.capacity.setpoints import SetPoint
from infra_costs.models import NodePool, ScheduleSetPoint, ScheduleVersion
from infra_costs.schedule import cron_error, timezone_error

REASON_MAX = 255


def schedule_version_apply(
    *,
    pool: NodePool,
    set_points: list[SetPoint],
    user: User | None,
    reason: str,
    params: dict | None = None,
    now: datetime | None = None,
) -> ScheduleVersion:
    """A new schedule version of `pool` in force from `now`, holding `set_points`."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValidationError("Say why the schedule changes.", errors={"reason": ["Required."]})
    if len(reason) > REASON_MAX:
        raise ValidationError(
            "The reason is too long.", errors={"reason": [f"At most {REASON_MAX} characters."]}
        )
    if not set_points:
        raise ValidationError("A schedule needs at least one set-point.")
    for sp in set_points:
        if cron_error(sp.cron) or timezone_error(sp.timezone) or sp.nodes < 0:
            raise ValidationError("The schedule has an invalid set-point.")
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        pool = NodePool.objects.select_for_update().get(pk=pool.pk)
        last = pool.schedule_versions.order_by("-number").values_list("number", flat=True).first()
        version = ScheduleVersion.objects.create(
            pool=pool,
            number=(last or 0) + 1,
            created_by=user if user is not None and user.is_authenticated else None,
            reason=reason,
            params=params or {},
            effective_from=now,
        )
        ScheduleSetPoint.objects.bulk_create(
            [
                ScheduleSetPoint(
                    pool=pool,
                    version=version,
                    cron=sp.cron,
                    node_count=sp.nodes,
                    timezone=sp.timezone,
                )
                for sp in set_points
            ]
        )
        audit_record(
            action="schedule.version_applied",
            actor=user,
            target=version,
            data={
                "pool": pool.slug,
                "number": version.number,
                "reason": reason,
                "set_points": [
                    {"cron": sp.cron, "nodes": sp.nodes, "timezone": sp.timezone}
                    for sp in set_points
                ],
                "params": params or {},
            },
        )
    return version
