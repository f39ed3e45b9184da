"""What a plan includes (its entitlements), for people (billing page) and the API.

The check at acceptance is `generations.entitlements.entitlements_check` (docs/pricing.md,
"Entitlements"); these are reads of the plan's fields only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from accounts.models import Plan


@dataclass(frozen=True)
class Entitlement:
    name: str
    label: str
    value: str  # for people: "All models", "4 MP", "No limit"


def plan_entitlements(plan: Plan) -> list[Entitlement]:
    """What `plan` includes, for people (billing page, API)."""

    def limit(value, unit: str) -> str:
        if value is None:
            return "No limit"
        if isinstance(value, Decimal):
            value = f"{value.normalize():f}"
        return f"{value} {unit}"

    models = plan.models_allowed
    return [
        Entitlement("api_access", "API access", "Yes" if plan.api_access else "No"),
        Entitlement(
            "models",
            "Models",
            "All models" if models is None else (", ".join(models) or "None"),
        ),
        Entitlement("max_megapixels", "Max resolution", limit(plan.max_megapixels, "MP")),
        Entitlement("max_duration_s", "Max duration", limit(plan.max_duration_s, "s")),
        Entitlement("max_batch_size", "Max batch", limit(plan.max_batch_size, "images")),
        Entitlement("watermark", "Watermark", "Yes" if plan.watermark else "No"),
        Entitlement("priority", "Queue priority", plan.get_queue_priority_display()),
    ]
