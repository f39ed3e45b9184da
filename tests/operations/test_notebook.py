"""docs/notebooks/unit_costs.ipynb: valid notebook JSON whose code cells, run against the
analytics views of a seeded database (no Jupyter needed: the cells are exec'd in order),
reproduce the unit-cost report's per-model figures (`unit_costs --format json`) to 1e-6 USD."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from tests.operations.analytics_scenario import END, START, seed

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "unit_costs.ipynb"
TOLERANCE = Decimal("0.000001")


def _code_cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["language"] == "python"
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code") and "id" in cell
        assert isinstance(cell["source"], list)
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _dsn() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_notebook_reproduces_the_unit_cost_report(monkeypatch):
    seed()
    monkeypatch.setenv("ANALYTICS_DSN", _dsn())
    monkeypatch.setenv("REPORT_START", START.isoformat())
    monkeypatch.setenv("REPORT_END", END.isoformat())
    namespace: dict = {"__name__": "notebook"}
    for source in _code_cells():
        exec(compile(source, str(NOTEBOOK), "exec"), namespace)
    table = namespace["unit_costs"]

    out = io.StringIO()
    call_command(
        "unit_costs",
        "--start",
        START.isoformat(),
        "--end",
        END.isoformat(),
        "--format",
        "json",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    expected = {m["model"]: m for m in report["models"]}
    assert set(table.index) == set(expected) and expected
    for model, row in expected.items():
        got = table.loc[model]
        assert int(got["generations"]) == row["generations"]
        assert int(got["failed"]) == row["failed"]
        for column in ("fully_loaded_cost_usd", "cost_per_generation_usd"):
            diff = abs(Decimal(repr(float(got[column]))) - Decimal(row[column]))
            assert diff <= TOLERANCE, (model, column, got[column], row[column])
    unattributed = Decimal(report["totals"].get("unattributed_usd", "0"))
    assert abs(Decimal(repr(namespace["unattributed"])) - unattributed) <= TOLERANCE
