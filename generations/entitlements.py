"""Entitlements per plan, checked in ONE place (docs/pricing.md, "Entitlements").

`entitlements_check(plan, model, params)` is called by the submission (`services.submission`)
and the quote (`quotes`) after the params are validated and before any quota: a refusal is
`PermissionDenied` (403) naming the entitlement (`limit: entitlement:<name>`) and writes
nothing. Limits a plan leaves empty are not checked (the defaults refuse nothing).

What a plan includes, for people and the API: `accounts.entitlements`.

Params read: `width` × `height` (megapixels), `duration_s` (seconds), `batch_size` (images per
request), each taking the model's schema default when the request leaves it out.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from accounts.models import Plan
from config.errors import PermissionDenied, limit_details
from generations.models import AIModel
from generations.price_tables import schema_defaults

MEGA = Decimal(1_000_000)


def _number(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _refuse(name: str, detail: str, *, value, used) -> PermissionDenied:
    return PermissionDenied(
        detail, **limit_details(name=f"entitlement:{name}", value=value, used=used)
    )


def entitlements_check(plan: Plan, model: AIModel, params: dict) -> None:
    """Refuse (403) what `plan` does not include: the model, the resolution, the duration or
    the batch size of `params`."""
    upgrade = "Upgrade your plan to use it."
    allowed = plan.models_allowed
    if allowed is not None and model.slug not in allowed:
        raise _refuse(
            "models", f"{model.name} is not included in the {plan.name} plan. {upgrade}",
            value=None, used=None,
        )  # fmt: skip
    values = {**schema_defaults(model.params_schema), **(params or {})}
    if plan.max_megapixels is not None:
        width, height = _number(values.get("width")), _number(values.get("height"))
        if width is not None and height is not None:
            megapixels = width * height / MEGA
            if megapixels > plan.max_megapixels:
                raise _refuse(
                    "max_megapixels",
                    f"The {plan.name} plan allows images up to {plan.max_megapixels.normalize():f}"
                    " megapixels. Upgrade your plan for larger images.",
                    value=f"{plan.max_megapixels.normalize():f}",
                    used=f"{megapixels.quantize(Decimal('0.01')).normalize():f}",
                )
    if plan.max_duration_s is not None:
        duration = _number(values.get("duration_s"))
        if duration is not None and duration > plan.max_duration_s:
            raise _refuse(
                "max_duration_s",
                f"The {plan.name} plan allows up to {plan.max_duration_s} seconds. "
                "Upgrade your plan for longer outputs.",
                value=plan.max_duration_s,
                used=f"{duration.normalize():f}",
            )
    if plan.max_batch_size is not None:
        batch = _number(values.get("batch_size"))
        if batch is not None and batch > plan.max_batch_size:
            raise _refuse(
                "max_batch_size",
                f"The {plan.name} plan allows up to {plan.max_batch_size} images per request. "
                "Upgrade your plan for larger batches.",
                value=plan.max_batch_size,
                used=f"{batch.normalize():f}",
            )
