"""Reads of price overrides."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from generations.overrides.models import PriceOverride


def override_latest(
    *, organization_id: int, model_id: int | None, at: datetime
) -> PriceOverride | None:
    """The latest version at `at` of exactly this override (a model's, or with `model_id`
    None the all-models one), an ending row included."""
    return (
        PriceOverride.objects.filter(
            organization_id=organization_id,
            effective_from__lte=at,
            **({"model_id": model_id} if model_id is not None else {"model__isnull": True}),
        )
        .select_related("model")
        .order_by("-effective_from", "-id")
        .first()
    )


def override_in_force(*, organization_id: int, model_id: int, at: datetime) -> PriceOverride | None:
    """The override for (organization, model) at `at`: the latest version of that model's,
    else (none, or ended) of the all-models one; None when neither is in force. One query
    (the acceptance path counts them): the latest row of each, DISTINCT ON the model."""
    latest = {
        row.model_id: row
        for row in PriceOverride.objects.filter(
            Q(model_id=model_id) | Q(model__isnull=True),
            organization_id=organization_id,
            effective_from__lte=at,
        )
        .order_by("model_id", "-effective_from", "-id")
        .distinct("model_id")
    }
    for key in (model_id, None):
        row = latest.get(key)
        if row is not None and not row.ends:
            return row
    return None


def overrides_current(*, organization_id: int, at: datetime) -> list[PriceOverride]:
    """Each of the organization's overrides in force at `at` (all models first)."""
    model_ids = set(
        PriceOverride.objects.filter(organization_id=organization_id, effective_from__lte=at)
        .values_list("model_id", flat=True)
        .distinct()
    )
    rows = []
    for model_id in sorted(model_ids, key=lambda m: (m is not None, m or 0)):
        row = override_latest(organization_id=organization_id, model_id=model_id, at=at)
        if row is not None and not row.ends:
            rows.append(row)
    return rows


def overrides_for(*, organization_id: int) -> list[PriceOverride]:
    """Every version of the organization's overrides, newest first (the history)."""
    return list(
        PriceOverride.objects.filter(organization_id=organization_id)
        .select_related("model", "created_by")
        .order_by("-effective_from", "-id")
    )
