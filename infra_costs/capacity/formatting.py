"""Renderings of a `Recommendation`: the spec's JSON (§5) and a table for people with 7×24
grids of the recommended nodes and the demand."""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from infra_costs.capacity.fifo import ReplayStats
from infra_costs.capacity.recommend import Recommendation

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
Q6 = Decimal("0.000001")
Q3 = Decimal("0.001")


def _q(value: Decimal | None, quantum: Decimal = Q6) -> str | None:
    if value is None:
        return None
    out = value.quantize(quantum, rounding=ROUND_HALF_UP)
    return f"{(out if out else abs(out)):f}"


def _stats_json(s: ReplayStats) -> dict[str, str | None]:
    return {
        "p50_wait_s": _q(s.p50_wait_s, Q3),
        "p95_wait_s": _q(s.p95_wait_s, Q3),
        "share_over_sla": _q(s.share_over_sla),
    }


def as_dict(rec: Recommendation) -> dict[str, Any]:
    """The spec's JSON (§5), decimals as strings: costs are USD per week."""
    return {
        "pool": rec.pool.slug,
        "sla_s": rec.pool.sla_queue_wait_s,
        "set_points": [
            {"cron": sp.cron, "nodes": sp.nodes, "timezone": sp.timezone} for sp in rec.set_points
        ],
        "current_cost_usd": _q(rec.current_cost_usd),
        "recommended_cost_usd": _q(rec.recommended_cost_usd),
        "savings_fraction": _q(rec.savings_fraction),
        "replay": {
            "current": _stats_json(rec.replay["current"]),
            "recommended": _stats_json(rec.replay["recommended"]),
        },
    }


def as_json(rec: Recommendation) -> str:
    return json.dumps(as_dict(rec), indent=2)


SHADES = " ░▒▓█"


def _grid(values: list[str], shade: list[float], width: int = 3) -> list[str]:
    """A 7×24 grid of `values` (rows Monday…Sunday, columns local hours) and, beside each
    row, a heat strip of `shade` relative to its maximum."""
    top = max(shade) or 1
    lines = ["     " + "".join(f"{h:>{width}}" for h in range(24)) + "   heat 00→23"]
    for d in range(7):
        row = values[d * 24 : d * 24 + 24]
        heat = "".join(
            SHADES[math.ceil(shade[d * 24 + h] * (len(SHADES) - 1) / top)] for h in range(24)
        )
        lines.append(f"  {DAYS[d]}" + "".join(f"{v:>{width}}" for v in row) + f"   {heat}")
    return lines


def _money(value: Decimal | None) -> str:
    """$1,234.50 — cents at least, more digits only when the value has them."""
    if value is None:
        return "—"
    digits = max(2, -min(0, value.normalize().as_tuple().exponent))
    return f"${value.quantize(Decimal(1).scaleb(-min(digits, 6)), ROUND_HALF_UP):,}"


def _secs(value: Decimal | None) -> str:
    return "never" if value is None else f"{value.quantize(Decimal('0.1'), ROUND_HALF_UP)} s"


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{(value * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def as_table(rec: Recommendation) -> str:
    pool = rec.pool
    p = f"{rec.percentile.normalize():f}"
    basis = {
        "schedule": "its current schedule",
        "uptime": "its measured uptime (no schedule)",
        "none": "nothing (no schedule, no uptime)",
    }[rec.current_basis]
    lines = [
        f"Capacity recommendation — pool {pool.slug} ({pool.gpu_type}), time zone {rec.timezone}",
        f"Window {rec.start_at:%Y-%m-%d} → {rec.end_at:%Y-%m-%d} (UTC, {rec.weeks} weeks): "
        f"{rec.jobs} jobs, {rec.replayed} started in the window",
        f"Demand = p{p} of busy nodes per hour-of-week; nodes = max({rec.min_nodes}, "
        f"ceil(demand × {1 + rec.buffer:f}))"
        + (
            f", then fitted to the SLA ({rec.fit_replays} replays: "
            f"{sum(rec.formula_nodes) - sum(rec.nodes)} node-hours a week trimmed)"
            if rec.fit == "sla"
            else ""
        ),
        "",
        "Recommended nodes per local hour",
    ]
    lines += _grid([str(n) for n in rec.nodes], [float(n) for n in rec.nodes])
    lines += ["", f"Demand (p{p} busy nodes)"]
    lines += _grid(
        [f"{float(d):.1f}" if d < 10 else f"{float(d):.0f}" for d in rec.demand],
        [float(d) for d in rec.demand],
        width=4,
    )
    lines += ["", f"Set-points ({rec.timezone})"]
    width = max(len(sp.cron) for sp in rec.set_points)
    lines += [
        f"  {sp.cron.ljust(width)}  → {sp.nodes} node{'' if sp.nodes == 1 else 's'}"
        for sp in rec.set_points
    ]
    rate = "no rate" if rec.rate is None else f"{_money(rec.rate)}/node-hour in force now"
    lines += [
        "",
        f"Cost per week ({rate}; current = {basis})",
        f"  current      {_money(rec.current_cost_usd):>14}  "
        f"{rec.current_node_hours_per_week.quantize(Decimal('0.1'), ROUND_HALF_UP)} node-hours",
        f"  recommended  {_money(rec.recommended_cost_usd):>14}  "
        f"{rec.recommended_node_hours_per_week.quantize(Decimal('0.1'), ROUND_HALF_UP)} node-hours",
        f"  savings      {_pct(rec.savings_fraction):>14}",
        "",
        f"Replay of the window's jobs (FIFO, arrival = started_at, SLA {pool.sla_queue_wait_s} s)",
        f"  {'':<12} {'p50 wait':>10} {'p95 wait':>10} {'over SLA':>9}",
    ]
    for name in ("current", "recommended"):
        s = rec.replay[name]
        lines.append(
            f"  {name:<12} {_secs(s.p50_wait_s):>10} {_secs(s.p95_wait_s):>10} "
            f"{_pct(s.share_over_sla):>9}"
            + (f"  ({s.never_started} never start)" if s.never_started else "")
        )
    return "\n".join(lines)
