"""Reads of enterprise contracts."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from accounts.contracts.models import Contract


def contract_latest(*, organization_id: int) -> Contract | None:
    """The organization's terms: its latest contract version (in force or not)."""
    return Contract.objects.filter(organization_id=organization_id).order_by("-version").first()


def contract_in_force(*, organization_id: int, at: datetime | None = None) -> Contract | None:
    """The latest contract version when it is in force at `at` (now), else None."""
    contract = contract_latest(organization_id=organization_id)
    if contract is None or not contract.in_force(at or timezone.now()):
        return None
    return contract


def contract_history(*, organization_id: int) -> list[Contract]:
    return list(
        Contract.objects.filter(organization_id=organization_id)
        .select_related("created_by")
        .order_by("-version")
    )
