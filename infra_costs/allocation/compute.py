"""The entry point of the unit-cost report:

report = unit_cost_report(date(2026, 1, 5), date(2026, 1, 8), window="day")
"""

from __future__ import annotations

from datetime import date
from decimal import localcontext
from typing import Any

from config.errors import ValidationError
from infra_costs.allocation import hourly
from infra_costs.allocation.assembly import assemble
from infra_costs.allocation.sql import raw_aggregates
from infra_costs.allocation.windows import gather_inputs
from infra_costs.periods import make_period

IDLE_POLICIES = ("weighted", "separate")


def parse_idle_policy(value: str) -> str:
    if value not in IDLE_POLICIES:
        raise ValidationError(
            f"idle_policy must be one of {', '.join(IDLE_POLICIES)}.",
            errors={"idle_policy": [f"Must be one of: {', '.join(IDLE_POLICIES)}."]},
        )
    return value


def unit_cost_report(
    start: date,
    end: date,
    *,
    window: str = "day",
    idle_policy: str = "weighted",
    timezone: str = "UTC",
) -> dict[str, Any]:
    """The unit-cost report of spec §5 (JSON-ready: decimals as 6-dp strings)."""
    parse_idle_policy(idle_policy)
    period = make_period(start, end, window=window, timezone=timezone)
    with localcontext() as ctx:
        ctx.prec = 50
        inp = gather_inputs(period)
        # From the per-hour aggregates when the period is made of whole UTC hours (the same
        # figures; see `hourly`), else by the full engine.
        raw = hourly.raw_from_hours(inp) if hourly.eligible(inp) else raw_aggregates(inp)
        return assemble(inp, raw, idle_policy=idle_policy)
