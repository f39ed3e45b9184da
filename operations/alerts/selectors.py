"""Reads of alerts for the staff pages."""

from __future__ import annotations

from operations.models import Alert, AlertState

RECENTLY_RESOLVED = 10


def alerts_open() -> list[Alert]:
    """Open alerts, critical first, then the oldest first (what has waited longest)."""
    alerts = Alert.objects.filter(state=AlertState.OPEN).select_related("rule")
    return sorted(alerts, key=lambda a: (a.severity != "critical", a.opened_at, a.pk))


def alerts_recently_resolved(*, limit: int = RECENTLY_RESOLVED) -> list[Alert]:
    """The last `limit` resolved alerts, newest resolution first."""
    return list(
        Alert.objects.filter(state=AlertState.RESOLVED)
        .select_related("rule")
        .order_by("-resolved_at", "-id")[:limit]
    )
