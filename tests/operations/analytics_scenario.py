"""A small seeded scenario for the analyst exports, the analytics views and the notebook: two
pools (a100 with a rate change, l4), two models, two organizations with customer jobs over
2026-01-05..07 (one failed, one crossing midnight), an imported run that is no customer's, and
an external (licensing) cost per generation of flux."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tests.factories import make_org
from tests.planning.test_margins import Margins

START, END = date(2026, 1, 5), date(2026, 1, 8)
QUERY = {"start": START.isoformat(), "end": END.isoformat()}


def seed() -> Margins:
    w = Margins()
    w.pool("a100", ("3.60", "2025-12-01 00:00"), ("4.00", "2026-01-06 12:00"))
    w.pool("l4", ("0.80", "2025-12-01 00:00"))
    w.up("a1", "2026-01-05 00:00", "2026-01-07 00:00", pool="a100")
    w.up("l1", "2026-01-05 06:00", "2026-01-07 18:00", pool="l4")
    w.model("flux", "a100", "8")
    w.model("sdxl", "l4", "4")
    w.models["flux"].external_cost_usd = Decimal("0.015")  # a licensed model
    w.models["flux"].save(update_fields=["external_cost_usd"])
    acme = make_org(slug="acme", plan="starter")
    bolt = make_org(slug="bolt", plan="creator")
    w.customer(acme, "flux", "a1", "2026-01-05 01:00", "2026-01-05 01:10")
    w.customer(acme, "flux", "a1", "2026-01-05 02:00", "2026-01-05 02:30", status="failed")
    w.customer(acme, "sdxl", "l1", "2026-01-05 07:00", "2026-01-05 07:05")
    w.customer(bolt, "flux", "a1", "2026-01-05 23:50", "2026-01-06 00:20")
    w.customer(bolt, "sdxl", "l1", "2026-01-06 10:00", "2026-01-06 10:45")
    w.customer(bolt, "sdxl", "l1", "2026-01-07 09:00", "2026-01-07 09:02")
    w.other("flux", "a1", "2026-01-06 13:00", "2026-01-06 14:00")
    return w
