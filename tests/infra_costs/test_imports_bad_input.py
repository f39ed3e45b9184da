"""import_jobs against hostile or unusual CSV input: NUL bytes, calendar edges, far UTC offsets,
huge fields. Every bad line is reported with its line number and nothing is written; good
rows keep their exact instants (the staging COPY is binary)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infra_costs.models import GpuRun
from tests.infra_costs.test_imports import JOBS, load_example, refused, run

pytestmark = pytest.mark.django_db

OK = "k1,model-a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"


def job(ext: str, start: str, end: str, *, model: str = "model-a") -> str:
    return f"{ext},{model},n1,{start},{end},succeeded\n"


def test_nul_byte_is_a_line_error_not_a_crash(tmp_path):
    load_example(tmp_path)
    before = GpuRun.objects.count()
    text = (
        JOBS
        + OK
        + job("k2", "2026-02-01T00:00:00+00:00", "2026-02-01T00:10:00+00:00", model="mod\x00el")
        + OK.replace("k1", "k3")
    )
    err = refused("jobs", text, tmp_path)
    assert err.splitlines() == ["line 3: malformed CSV: line contains NUL"]
    out, err = run("jobs", text, "--skip-invalid", tmp_path=tmp_path)
    assert out.startswith("imported 2 rows, 0 already present, 1 invalid")
    assert "skipped line 3: malformed CSV: line contains NUL" in err
    assert GpuRun.objects.count() == before + 2


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        ("2026-02-29T00:00:00+00:00", "is not an ISO 8601 timestamp"),  # not a leap year
        ("2026-04-31T00:00:00+00:00", "is not an ISO 8601 timestamp"),
        ("2026-13-01T00:00:00+00:00", "is not an ISO 8601 timestamp"),
        ("2026-02-01T24:00:00+00:00", "is not an ISO 8601 timestamp"),
        ("2026-02-01T00:00:60+00:00", "is not an ISO 8601 timestamp"),
        ("2026-02-01T00:00:00", "has no UTC offset"),
        ("", "is not an ISO 8601 timestamp"),
    ],
)
def test_calendar_edges_are_refused_with_their_line(tmp_path, start, reason):
    load_example(tmp_path)
    text = JOBS + OK + job("k2", start, "2026-03-01T00:10:00+00:00")
    err = refused("jobs", text, tmp_path)
    assert len(err.splitlines()) == 1
    assert err.startswith("line 3: started_at: ") and reason in err


def test_leap_day_and_far_offsets_keep_their_instants(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        job("f1", "2024-02-29T23:30:00-00:30", "2024-03-01T00:10:00.123456Z")
        + job("f2", "2026-02-01T14:00:00+14:00", "2026-01-31T12:10:00-12:00")
        + job("f3", "2026-02-01T20:00:00+20:00", "2026-02-01 00:10:00.5+00:00")
    )
    out, _ = run("jobs", text, tmp_path=tmp_path)
    assert out.startswith("imported 3 rows, 0 already present, 0 invalid")
    got = {
        r.external_id: (r.started_at, r.finished_at)
        for r in GpuRun.objects.filter(external_id__in=["f1", "f2", "f3"])
    }
    assert got == {
        "f1": (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), datetime(2024, 3, 1, 0, 10, 0, 123456, UTC)),
        "f2": (datetime(2026, 2, 1, 0, 0, tzinfo=UTC), datetime(2026, 2, 1, 0, 10, tzinfo=UTC)),
        "f3": (datetime(2026, 2, 1, 0, 0, tzinfo=UTC), datetime(2026, 2, 1, 0, 10, 0, 500000, UTC)),
    }
    out, _ = run("jobs", text, tmp_path=tmp_path)  # same instants: already present
    assert out.startswith("imported 0 rows, 3 already present, 0 invalid")


def test_huge_field_is_reported_and_later_lines_keep_their_numbers(tmp_path):
    load_example(tmp_path)
    text = JOBS + OK + job("x" * 200_000, "2026-02-01T00:00:00+00:00", "2026-02-01T00:10:00+00:00")
    text += job("k1", "2026-02-01T00:00:00+00:00", "2026-02-01T00:05:00+00:00")  # line 4: dup
    text += job("y" * 129, "2026-02-01T00:00:00+00:00", "2026-02-01T00:10:00+00:00")  # line 5
    err = refused("jobs", text, tmp_path)
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["line 3", "line 4", "line 5"]
    assert "malformed CSV: field larger than field limit" in lines[0]
    assert "duplicate external_id (first at line 2)" in lines[1]
    assert "external_id: longer than 128 characters" in lines[2]
