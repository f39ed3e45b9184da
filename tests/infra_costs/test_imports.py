"""CSV imports (commands and services): formats, all-or-nothing refusals with every bad line,
idempotency, --skip-invalid, the runs_imported signal."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from infra_costs import services
from infra_costs.imports import ImportRefused
from infra_costs.models import GpuRun, GpuRunKey, Node, NodePool, PoolRate, UptimeInterval
from infra_costs.signals import runs_imported
from tests.infra_costs.conftest import DATA

pytestmark = pytest.mark.django_db


POOLS = "pool,gpu_type,hourly_rate_usd,effective_from\n"
UPTIME = "node,pool,started_at,ended_at\n"
JOBS = "external_id,model,node,started_at,finished_at,status\n"


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (NodePool, PoolRate, Node, UptimeInterval, GpuRun))


def run(kind: str, text: str, *args: str, tmp_path) -> tuple[str, str]:
    path = tmp_path / f"{kind}.csv"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    call_command(f"import_{kind}", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(kind: str, text: str, tmp_path) -> str:
    before = counts()
    path = tmp_path / f"{kind}.csv"
    path.write_text(text)
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command(f"import_{kind}", str(path), stdout=io.StringIO(), stderr=err)
    assert counts() == before, "a refused file wrote something"
    return err.getvalue()


def load_example(tmp_path) -> None:
    for kind in ("pools", "uptime", "jobs"):
        run(kind, (DATA / f"{kind}.csv").read_text(), tmp_path=tmp_path)


def test_example_imports_and_reimport_adds_nothing(tmp_path):
    out, _ = run("pools", (DATA / "pools.csv").read_text(), tmp_path=tmp_path)
    assert out.startswith("imported 3 rows, 0 already present, 0 invalid, 2 new pools")
    out, _ = run("uptime", (DATA / "uptime.csv").read_text(), tmp_path=tmp_path)
    assert out.startswith("imported 5 rows, 0 already present, 0 invalid, 3 new nodes")
    out, _ = run("jobs", (DATA / "jobs.csv").read_text(), tmp_path=tmp_path)
    assert out.startswith("imported 4 rows, 0 already present, 0 invalid")
    before = counts()
    assert before == (2, 3, 3, 5, 4)
    for kind, n in (("pools", 3), ("uptime", 5), ("jobs", 4)):
        out, _ = run(kind, (DATA / f"{kind}.csv").read_text(), tmp_path=tmp_path)
        assert out.startswith(f"imported 0 rows, {n} already present, 0 invalid")
    assert counts() == before
    run_ = GpuRun.objects.get(external_id="j4")
    assert (run_.source, run_.pool.slug, run_.node.name) == ("imported", "gpu1", "n2")
    n1 = UptimeInterval.objects.filter(node__name="n1").first()
    assert n1.pool.slug == "gpu1"


def test_wrong_columns_refused_at_line_1(tmp_path):
    err = refused("jobs", "external_id,model,node,started_at,status\n", tmp_path)
    assert "line 1: missing column(s) finished_at" in err
    err = refused("pools", "pool,gpu,hourly_rate_usd,effective_from\n", tmp_path)
    assert "line 1: missing column(s) gpu_type; unexpected column(s) gpu" in err
    err = refused("uptime", "", tmp_path)
    assert "line 1: empty file" in err


def test_columns_in_any_order(tmp_path):
    text = "effective_from,pool,hourly_rate_usd,gpu_type\n2026-01-01T00:00:00+00:00,p,1.5,L4\n"
    out, _ = run("pools", text, tmp_path=tmp_path)
    assert out.startswith("imported 1 row")
    assert PoolRate.objects.get().hourly_rate_usd == 1.5


def test_bad_pool_rows_every_line_reported(tmp_path):
    text = POOLS + (
        "p,A100,3.60,2026-01-01T00:00:00+00:00\n"  # 2 ok
        "p,A100,-1,2026-01-02T00:00:00+00:00\n"  # 3 negative
        "p,A100,abc,2026-01-03T00:00:00+00:00\n"  # 4 not a decimal
        "p,A100,1.0,2026-01-04T00:00:00\n"  # 5 naive
        "p,A100,1.0,yesterday\n"  # 6 not a timestamp
        "p,A100,4.00,2026-01-01T00:00:00+00:00\n"  # 7 duplicate version
        "q,L4,1.1234567,2026-01-01T00:00:00+00:00\n"  # 8 > 6 dp
        "p,H100,1.0,2026-01-09T00:00:00+00:00\n"  # 9 other gpu type
        "bad pool,L4,1.0,2026-01-01T00:00:00+00:00\n"  # 10 not a slug
        "p,A100,1.0\n"  # 11 short row
    )
    err = refused("pools", text, tmp_path)
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"line {n}" for n in range(3, 12)]
    assert "negative" in lines[0]
    assert "'abc' is not a decimal number" in lines[1]
    assert "has no UTC offset" in lines[2]
    assert "not an ISO 8601 timestamp" in lines[3]
    assert "duplicate rate version p @ 2026-01-01T00:00:00+00:00 (first at line 2)" in lines[4]
    assert "more than 6 decimal places" in lines[5]
    assert "gpu_type 'H100' differs from 'A100' at line 2" in lines[6]
    assert "not a slug" in lines[7]
    assert "expected 4 fields, got 3" in lines[8]


def test_bad_uptime_rows(tmp_path):
    load_example(tmp_path)
    text = UPTIME + (
        "n9,gpu1,2026-02-01T00:00:00+00:00,2026-02-01T01:00:00+00:00\n"  # 2 ok (new node)
        "n1,gpu1,2026-02-01T02:00:00+00:00,2026-02-01T01:00:00+00:00\n"  # 3 end before start
        "n1,gpu1,2026-02-01T02:00:00+00:00,2026-02-01T02:00:00+00:00\n"  # 4 equal
        "n1,nope,2026-02-01T00:00:00+00:00,2026-02-01T01:00:00+00:00\n"  # 5 unknown pool
        "n1,gpu2,2026-02-01T00:00:00+00:00,2026-02-01T01:00:00+00:00\n"  # 6 node's pool
        "n9,gpu2,2026-02-02T00:00:00+00:00,2026-02-02T01:00:00+00:00\n"  # 7 new node, 2 pools
        "n9,gpu1,2026-02-01T00:00:00+00:00,2026-02-01T01:00:00+00:00\n"  # 8 duplicate
        "n1,gpu1,2026-02-01 00:00,2026-02-01T01:00:00Z\n"  # 9 naive start
    )
    err = refused("uptime", text, tmp_path)
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"line {n}" for n in range(3, 10)]
    assert "ended_at is before started_at" in lines[0]
    assert "ended_at equals started_at" in lines[1]
    assert "unknown pool 'nope'" in lines[2]
    assert "node 'n1' belongs to pool 'gpu1'" in lines[3]
    assert "node 'n9' is in pool 'gpu1' at line 2" in lines[4]
    assert "duplicate interval (first at line 2)" in lines[5]
    assert "has no UTC offset" in lines[6]


def test_bad_job_rows(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        "k1,model-a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"  # 2 ok
        "k2,model-a,nx,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"  # 3
        "k3,model-a,n1,2026-02-01T00:10:00+00:00,2026-02-01T00:00:00+00:00,failed\n"  # 4
        "k4,model-a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,done\n"  # 5
        "k1,model-a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"  # 6
        "j1,model-b,n1,2026-01-05T01:00:00+00:00,2026-01-05T01:10:00+00:00,succeeded\n"  # 7
        "k5,model a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00,succeeded\n"  # 8
    )
    err = refused("jobs", text, tmp_path)
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"line {n}" for n in range(3, 9)]
    assert "unknown node 'nx'" in lines[0]
    assert "finished_at is before started_at" in lines[1]
    assert "status: 'done' is not one of succeeded, failed, cancelled" in lines[2]
    assert "duplicate external_id (first at line 2)" in lines[3]
    assert "external_id already imported with different data" in lines[4]
    assert "model: 'model a' is not a slug" in lines[5] and "no UTC offset" in lines[5]


def test_same_data_under_an_existing_id_is_skipped(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        "j1,model-a,n1,2026-01-05T01:00:00+00:00,2026-01-05T01:10:00+00:00,succeeded\n"
        "j9,model-a,n1,2026-01-05T04:00:00+01:00,2026-01-05T04:10:00+01:00,succeeded\n"
    )
    out, _ = run("jobs", text, tmp_path=tmp_path)
    assert out.startswith("imported 1 row, 1 already present, 0 invalid")
    # Same instants written with another offset are the same data.
    text = JOBS + "j1,model-a,n1,2026-01-05T02:00:00+01:00,2026-01-05T02:10:00+01:00,succeeded\n"
    out, _ = run("jobs", text, tmp_path=tmp_path)
    assert out.startswith("imported 0 rows, 1 already present")


def test_skip_invalid_imports_the_good_rows(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        "k1,model-c,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
        "k2,model-c,nx,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
        "k1,model-c,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
        "k3,model-c,n3,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,failed\n"
    )
    out, err = run("jobs", text, "--skip-invalid", tmp_path=tmp_path)
    assert out.startswith("imported 2 rows, 0 already present, 2 invalid")
    assert "skipped line 3: unknown node 'nx'" in err
    assert "skipped line 4: duplicate external_id (first at line 2)" in err
    assert set(
        GpuRun.objects.filter(model_slug="model-c").values_list("external_id", flat=True)
    ) == {
        "k1",
        "k3",
    }
    assert GpuRun.objects.get(external_id="k3").pool.slug == "gpu2"


def test_skip_invalid_counts_present_conflicting_and_short_lines(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        "j1,model-a,n1,2026-01-05T01:00:00+00:00,2026-01-05T01:10:00+00:00,succeeded\n"  # 2
        "j1,model-a,n1,2026-01-05T01:00:00+00:00,2026-01-05T01:10:00+00:00,succeeded\n"  # 3
        "j2,model-b,n1,2026-01-05T01:00:00+00:00,2026-01-05T01:20:00+00:00,succeeded\n"  # 4
        "\n"  # 5: blank, ignored
        "m1,model-a,n1\n"  # 6
        "m3,model-a,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,failed\n"  # 7
        'm2,model-a,n1,2026-02-01T00:00:00+00:00,"2026\n'  # 8: a quote left open at the end
    )
    before = GpuRun.objects.count()
    out, err = run("jobs", text, "--skip-invalid", tmp_path=tmp_path)
    assert out.startswith("imported 1 row, 1 already present, 4 invalid")
    skipped = [line.split(":")[0] for line in err.splitlines() if line.startswith("skipped")]
    assert skipped == ["skipped line 3", "skipped line 4", "skipped line 6", "skipped line 8"]
    assert "expected 6 fields, got 3" in err and "expected 6 fields, got 5" in err
    assert GpuRun.objects.count() == before + 1
    assert GpuRun.objects.get(external_id="m3").status == "failed"
    assert GpuRun.objects.get(external_id="j2").started_at.hour == 2  # the conflict left as is


def _statements(text: str, *args: str, tmp_path) -> tuple[list[str], str, str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        try:
            out, err = run("jobs", text, *args, tmp_path=tmp_path)
        except CommandError:
            out, err = "refused", ""
    return [q["sql"] for q in ctx.captured_queries], out, err


def test_an_id_twice_in_an_otherwise_clean_file_is_found_by_the_claim(tmp_path):
    load_example(tmp_path)
    keys = GpuRunKey.objects.count()
    text = JOBS + (
        "d1,model-c,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"  # 2
        "d2,model-c,n1,2026-02-01T00:20:00+00:00,2026-02-01T00:30:00+00:00,succeeded\n"  # 3
        "d1,model-c,n1,2026-02-01T00:40:00+00:00,2026-02-01T00:50:00+00:00,failed\n"  # 4
    )
    err = refused("jobs", text, tmp_path)
    assert [line for line in err.splitlines() if line.startswith("line ")] == [
        "line 4: duplicate external_id (first at line 2)"
    ]
    assert GpuRunKey.objects.count() == keys, "the refused file claimed ids"

    out, err = run("jobs", text, "--skip-invalid", tmp_path=tmp_path)
    assert out.startswith("imported 2 rows, 0 already present, 1 invalid")
    assert "skipped line 4: duplicate external_id (first at line 2)" in err
    d1 = GpuRun.objects.get(external_id="d1")
    assert (d1.status, d1.started_at.minute) == ("succeeded", 0)  # the first line's run
    assert GpuRunKey.objects.count() == keys + 2


def test_a_clean_new_file_is_not_searched_for_duplicates_but_a_reimport_is(tmp_path):
    load_example(tmp_path)
    text = JOBS + (
        "c1,model-c,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
        "c2,model-c,n1,2026-02-01T00:20:00+00:00,2026-02-01T00:30:00+00:00,succeeded\n"
    )
    sqls, out, _ = _statements(text, tmp_path=tmp_path)
    assert out.startswith("imported 2 rows, 0 already present, 0 invalid")
    assert not [s for s in sqls if "HAVING count(*) > 1" in s]  # the claim vouches for it
    # The same ids again, one of them twice: present rows are not claimed, so looked for.
    again = text + "c1,model-c,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
    sqls, out, _ = _statements(again, tmp_path=tmp_path)
    assert out == "refused"
    assert [s for s in sqls if "HAVING count(*) > 1" in s]


def test_the_models_signalled_are_those_of_the_rows_kept(tmp_path):
    load_example(tmp_path)
    received = []

    def receiver(sender, model_slugs, **kwargs):
        received.append(model_slugs)

    text = JOBS + (
        "s1,model-x,n1,2026-02-01T00:00:00+00:00,2026-02-01T00:10:00+00:00,succeeded\n"
        "s2,model-y,n1,2026-02-01T00:20:00+00:00,2026-02-01T00:30:00+00:00,succeeded\n"
        "s1,model-z,n1,2026-02-01T00:40:00+00:00,2026-02-01T00:50:00+00:00,succeeded\n"
    )
    runs_imported.connect(receiver)
    try:
        run("jobs", text, "--skip-invalid", tmp_path=tmp_path)
    finally:
        runs_imported.disconnect(receiver)
    assert received == [{"model-x", "model-y"}]  # model-z's line was a duplicate


def test_runs_imported_signal(tmp_path):
    received = []

    def receiver(sender, model_slugs, **kwargs):
        received.append(model_slugs)

    runs_imported.connect(receiver)
    try:
        load_example(tmp_path)
    finally:
        runs_imported.disconnect(receiver)
    assert received == [{"model-a", "model-b"}]


def test_services_accept_rows_and_key_errors_by_index():
    services.pools_import(
        rows=[
            {
                "pool": "p",
                "gpu_type": "L4",
                "hourly_rate_usd": 1,
                "effective_from": "2026-01-01T00:00:00Z",
            }
        ]
    )
    with pytest.raises(ImportRefused) as exc:
        services.uptime_import(
            rows=[
                {
                    "node": "a",
                    "pool": "p",
                    "started_at": "2026-01-01T00:00:00Z",
                    "ended_at": "2026-01-01T01:00:00Z",
                },
                {"node": "b", "pool": "p", "started_at": "2026-01-01T00:00:00Z"},
                "nope",
                {
                    "node": "c",
                    "pool": "zz",
                    "started_at": "2026-01-01T00:00:00Z",
                    "ended_at": "2026-01-01T01:00:00Z",
                    "extra": 1,
                },
            ]
        )
    assert exc.value.errors == {
        "1": ["missing field(s) ended_at"],
        "2": ["expected an object"],
        "3": ["unexpected field(s) extra"],
    }
    assert Node.objects.count() == 0


def test_stdin_and_missing_file(tmp_path, monkeypatch):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_pools", str(tmp_path / "missing.csv"), stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_large_job_file_is_bulk_imported(tmp_path):
    """20,000 rows through COPY; a second run finds them all present."""
    load_example(tmp_path)
    rows = [JOBS]
    for i in range(20_000):
        m, s = divmod(i, 60)
        rows.append(
            f"bulk-{i},model-{i % 7},n{1 + i % 2},2026-02-01T{m // 60 % 24:02d}:{m % 60:02d}:"
            f"{s:02d}+00:00,2026-02-01T{m // 60 % 24:02d}:{m % 60:02d}:{s:02d}.5+00:00,"
            f"{'succeeded' if i % 10 else 'failed'}\n"
        )
    text = "".join(rows)
    out, _ = run("jobs", text, tmp_path=tmp_path)
    assert out.startswith("imported 20000 rows, 0 already present, 0 invalid")
    out, _ = run("jobs", text, tmp_path=tmp_path)
    assert out.startswith("imported 0 rows, 20000 already present, 0 invalid")
    assert GpuRun.objects.filter(external_id__startswith="bulk-").count() == 20_000
