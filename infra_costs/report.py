"""Renderings of the unit-cost report (the dict of `allocation.unit_cost_report`): a table for
people, CSV of the models, pools and pipeline-stages tables, JSON as is."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

MODEL_COLUMNS = (
    "model",
    "generations",
    "failed",
    "gpu_hours",
    "active_cost_usd",
    "allocated_cost_usd",
    "fully_loaded_cost_usd",
    "external_cost_usd",
    "stage_cost_usd",
    "cost_per_generation_usd",
    "active_cost_per_generation_usd",
)
STAGE_COLUMNS = (
    "model",
    "stage",
    "kind",
    "generations",
    "cpu_seconds_per_generation",
    "cpu_hourly_usd",
    "usd_per_generation",
    "cost_usd",
)
POOL_COLUMNS = (
    "pool",
    "uptime_hours",
    "busy_hours",
    "idle_hours",
    "idle_fraction",
    "cost_usd",
    "allocated_usd",
    "unallocated_usd",
)


def as_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def as_csv(report: dict[str, Any]) -> str:
    """The models table as CSV (`manage.py unit_costs --format csv`, the staff page's link)."""
    return _csv(report["models"], MODEL_COLUMNS)


def pools_as_csv(report: dict[str, Any]) -> str:
    """The pools table as CSV (the staff page's link)."""
    return _csv(report["pools"], POOL_COLUMNS)


def stage_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, pipeline stage): the stage lines of every model."""
    return report.get("stages", [])


def stages_as_csv(report: dict[str, Any]) -> str:
    """The pipeline stages per model as CSV (`unit_costs --format csv --csv-table stages`)."""
    return _csv(stage_rows(report), STAGE_COLUMNS)


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue()


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return out


def _cell(value) -> str:
    return "—" if value is None else str(value)


def as_table(report: dict[str, Any]) -> str:
    p = report["period"]
    lines = [
        f"Unit costs {p['start']} → {p['end']} ({p['timezone']}, {p['windows']} "
        f"{p['window']} windows, idle policy {p['idle_policy']})",
        "",
        "Pools",
    ]
    lines += _table(
        [
            "pool",
            "uptime h",
            "busy h",
            "idle h",
            "idle %",
            "cost $",
            "allocated $",
            "unallocated $",
        ],
        [
            [
                r["pool"],
                r["uptime_hours"],
                r["busy_hours"],
                r["idle_hours"],
                _pct(r["idle_fraction"]),
                r["cost_usd"],
                r["allocated_usd"],
                r["unallocated_usd"],
            ]
            for r in report["pools"]
        ],
    )
    lines += ["", "Models"]
    lines += _table(
        [
            "model",
            "gens",
            "failed",
            "GPU h",
            "active $",
            "allocated $",
            "fully loaded $",
            "external $",
            "stages $",
            "$ / gen",
            "active $ / gen",
        ],
        [
            [
                r["model"],
                str(r["generations"]),
                str(r["failed"]),
                r["gpu_hours"],
                r["active_cost_usd"],
                r["allocated_cost_usd"],
                r["fully_loaded_cost_usd"],
                r["external_cost_usd"],
                r.get("stage_cost_usd", "0.000000"),
                _cell(r["cost_per_generation_usd"]),
                _cell(r["active_cost_per_generation_usd"]),
            ]
            for r in report["models"]
        ],
    )
    stages = stage_rows(report)
    if stages:
        lines += ["", "Pipeline stages per generation (not infrastructure; in $ / gen)"]
        lines += _table(
            ["model", "stage", "kind", "gens", "CPU s / gen", "CPU $ / h", "$ / gen", "cost $"],
            [
                [
                    r["model"],
                    r["stage"],
                    r["kind"],
                    str(r["generations"]),
                    _cell(r["cpu_seconds_per_generation"]),
                    _cell(r["cpu_hourly_usd"]),
                    r["usd_per_generation"],
                    r["cost_usd"],
                ]
                for r in stages
            ],
        )
    if "idle" in report:
        lines += ["", "Idle (one line per pool)"]
        lines += _table(
            ["pool", "idle h", "idle cost $"],
            [[r["pool"], r["idle_hours"], r["idle_cost_usd"]] for r in report["idle"]],
        )
    t = report["totals"]
    lines += [
        "",
        f"Infrastructure cost  ${t['infra_cost_usd']}",
        f"Generations          {t['generations']}",
        f"Unattributed         ${t['unattributed_usd']}",
        f"External cost        ${t.get('external_cost_usd', '0.000000')} (not infrastructure)",
        f"Pipeline stages      ${t.get('stage_cost_usd', '0.000000')} (not infrastructure)",
        f"Weighted average     ${_cell(t['weighted_avg_cost_per_generation_usd'])} per generation",
        f"Idle fraction        {_pct(t['idle_fraction'])}",
    ]
    if report["warnings"]:
        lines += ["", "Warnings"]
        lines += [f"  ! {w['message']}" for w in report["warnings"]]
    return "\n".join(lines)


def _pct(fraction: str | None) -> str:
    if fraction is None:
        return "—"
    return f"{float(fraction) * 100:.1f}%"
