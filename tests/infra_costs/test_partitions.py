"""The GPU runs partitioned by month of `started_at` (migration 0007, `infra_costs.partitions`):
rows land in their month's partition or the default one, imports make the months they need,
a new month takes its rows out of the default partition, external_id stays unique across
partitions (re-import, live replay, a detached month), and detaching a month leaves the other
months' reports as they were."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection

from config.errors import NotFound, ValidationError
from infra_costs import partitions, services
from infra_costs.allocation import unit_cost_report
from infra_costs.imports.results import ImportRefused
from infra_costs.models import CostHourDirty, GpuRun, GpuRunKey, NodePool
from tests.infra_costs.test_cost_aggregates import full_report

pytestmark = pytest.mark.django_db

JAN = datetime(2025, 1, 1, tzinfo=UTC)
NODES = ("a0", "a1")


def iso(t: datetime) -> str:
    return t.isoformat()


def where(external_id: str) -> str:
    """The partition holding the run."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT tableoid::regclass::text FROM infra_costs_gpurun WHERE external_id = %s",
            [external_id],
        )
        rows = cur.fetchall()
    assert len(rows) == 1, rows
    return rows[0][0]


def attached() -> set[str]:
    return {p.name for p in partitions.gpu_run_partitions()}


def setup_fleet(*, start: datetime = JAN - timedelta(days=2), days: int = 100) -> NodePool:
    services.pools_import(
        rows=[
            {
                "pool": "pa",
                "gpu_type": "L4",
                "hourly_rate_usd": "1.30",
                "effective_from": iso(start),
            }
        ]
    )
    services.uptime_import(
        rows=[
            {
                "node": n,
                "pool": "pa",
                "started_at": iso(start + timedelta(minutes=17 * i)),
                "ended_at": iso(start + timedelta(days=days, minutes=-23 * i)),
            }
            for i, n in enumerate(NODES)
        ]
    )
    return NodePool.objects.get(slug="pa")


def job(i: int, start: datetime, minutes: int = 50, status: str = "succeeded") -> dict:
    return {
        "external_id": f"j{i}",
        "model": ("m1", "m2")[i % 2],
        "node": NODES[i % 2],
        "started_at": iso(start),
        "finished_at": iso(start + timedelta(minutes=minutes)),
        "status": status,
    }


def month_jobs(first: int = 0) -> list[dict]:
    """Runs in January, February and March 2025, one across each month's end."""
    rows, i = [], first
    for month_start in (JAN, datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC)):
        for h in range(0, 24 * 20, 29):
            rows.append(job(i, month_start + timedelta(hours=h, minutes=7 * (i % 5))))
            i += 1
    rows.append(job(i, datetime(2025, 1, 31, 23, 40, tzinfo=UTC), minutes=45))  # Jan → Feb
    return rows


def test_an_import_across_months_makes_their_partitions_and_rows_land_in_them():
    setup_fleet()
    assert "infra_costs_gpurun_p2025_01" not in attached()
    rows = month_jobs()
    result = services.jobs_import(rows=rows)
    assert result.imported == len(rows)
    assert {"infra_costs_gpurun_p2025_01", "infra_costs_gpurun_p2025_02"} <= attached()
    assert "infra_costs_gpurun_p2025_03" in attached()
    for r in rows:
        started = datetime.fromisoformat(r["started_at"])
        assert where(r["external_id"]) == f"infra_costs_gpurun_p{started:%Y_%m}"
    # The run across January's end belongs to January (its start).
    assert where(rows[-1]["external_id"]) == "infra_costs_gpurun_p2025_01"
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM infra_costs_gpurun_default")
        assert cur.fetchone()[0] == 0
    assert GpuRunKey.objects.count() == len(rows)


def test_a_run_of_a_month_without_partition_goes_to_default_and_moves_with_its_month():
    pool = setup_fleet(start=datetime(2024, 5, 30, tzinfo=UTC), days=5)
    start = datetime(2024, 6, 1, 10, 15, tzinfo=UTC)
    assert "infra_costs_gpurun_p2024_06" not in attached()
    run = services.gpu_run_start(
        external_id="live-june", model_slug="m1", pool=pool, node_name="a0", started_at=start
    )
    services.gpu_run_finish(
        external_id="live-june", status="succeeded", finished_at=start + timedelta(minutes=70)
    )
    assert where("live-june") == "infra_costs_gpurun_default"
    services.cost_aggregates_refresh()
    report = unit_cost_report(date(2024, 6, 1), date(2024, 6, 2))
    assert report["totals"]["generations"] == 1

    assert partitions.gpu_run_months_ensure(first=start, last=start) == 1
    assert where("live-june") == "infra_costs_gpurun_p2024_06"
    assert partitions.gpu_run_months_ensure(first=start, last=start) == 0  # exists: no-op
    # Moved, not changed: same row, no hour marked dirty, same report, and still exactly once.
    assert GpuRun.objects.get(external_id="live-june").pk == run.pk
    assert not CostHourDirty.objects.exists()
    assert unit_cost_report(date(2024, 6, 1), date(2024, 6, 2)) == report
    again = services.gpu_run_start(
        external_id="live-june", model_slug="m1", pool=pool, node_name="a0", started_at=start
    )
    assert again.pk == run.pk and GpuRun.objects.filter(external_id="live-june").count() == 1


def test_external_id_is_unique_across_partitions():
    pool = setup_fleet()
    rows = month_jobs()
    services.jobs_import(rows=rows)
    again = services.jobs_import(rows=rows)  # a re-import writes nothing
    assert (again.imported, again.already_present) == (0, len(rows))

    # The same id with a start in another month: refused, whichever month holds the run.
    moved = dict(rows[0], started_at=iso(datetime(2025, 3, 20, tzinfo=UTC)))
    moved["finished_at"] = iso(datetime(2025, 3, 20, 1, tzinfo=UTC))
    with pytest.raises(ImportRefused) as refused:
        services.jobs_import(rows=[moved])
    assert "already imported with different data" in str(refused.value.result.errors)
    result = services.jobs_import(rows=[moved, job(500, JAN)], skip_invalid=True)
    assert (result.imported, list(result.errors)) == (1, [0])

    # A live delivery of an imported id, with a start in another month: the first run stays.
    first = GpuRun.objects.get(external_id="j0")
    replay = services.gpu_run_start(
        external_id="j0",
        model_slug="m1",
        pool=pool,
        node_name="a0",
        started_at=datetime(2025, 3, 20, tzinfo=UTC),
    )
    assert replay.pk == first.pk and replay.started_at == first.started_at

    # A live run replayed: one run; its finish corrected into another month moves it.
    start = datetime(2025, 2, 27, 9, tzinfo=UTC)
    live = services.gpu_run_start(
        external_id="live-1", model_slug="m2", pool=pool, node_name="a1", started_at=start
    )
    assert (
        services.gpu_run_start(
            external_id="live-1", model_slug="m2", pool=pool, node_name="a1", started_at=start
        ).pk
        == live.pk
    )
    services.gpu_run_finish(
        external_id="live-1",
        status="succeeded",
        finished_at=datetime(2025, 3, 1, 2, tzinfo=UTC),
        started_at=datetime(2025, 3, 1, 1, tzinfo=UTC),
    )
    assert where("live-1") == "infra_costs_gpurun_p2025_03"
    assert GpuRunKey.objects.filter(external_id="live-1").count() == 1
    assert GpuRun.objects.count() == len(rows) + 2

    # Deleting a run frees its id.
    GpuRun.objects.filter(external_id="live-1").delete()
    assert not GpuRunKey.objects.filter(external_id="live-1").exists()
    services.gpu_run_start(
        external_id="live-1", model_slug="m2", pool=pool, node_name="a1", started_at=start
    )
    assert GpuRun.objects.filter(external_id="live-1").count() == 1


def test_detaching_a_month_keeps_the_other_months_reports_and_its_ids():
    setup_fleet()
    rows = month_jobs()
    services.jobs_import(rows=rows)
    services.cost_aggregates_refresh()
    feb = unit_cost_report(date(2025, 2, 1), date(2025, 3, 1))
    mar = unit_cost_report(date(2025, 3, 1), date(2025, 4, 1), window="hour")
    assert feb == full_report("2025-02-01", "2025-03-01")
    assert feb["totals"]["generations"] > 0

    CostHourDirty.objects.create(hour=datetime(2025, 1, 3, 4, tzinfo=UTC))
    with pytest.raises(ValidationError):  # dirty hours of the month: refresh first
        partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    services.cost_aggregates_refresh()
    partitions.gpu_run_month_detach(month=date(2025, 1, 1))

    assert "infra_costs_gpurun_p2025_01" not in attached()
    jan_rows = [r for r in rows if r["started_at"].startswith("2025-01")]
    assert not GpuRun.objects.filter(started_at__lt=datetime(2025, 2, 1, tzinfo=UTC)).exists()
    with connection.cursor() as cur:  # kept as a plain table
        cur.execute("SELECT count(*) FROM infra_costs_gpurun_p2025_01")
        assert cur.fetchone()[0] == len(jan_rows)
    assert unit_cost_report(date(2025, 2, 1), date(2025, 3, 1)) == feb
    assert unit_cost_report(date(2025, 3, 1), date(2025, 4, 1), window="hour") == mar

    # The detached runs' ids stay taken: a re-import of the year adds only the new rows
    # (the rows of the detached month are not visible, so the import claims ids row by row).
    new = [job(1000 + k, datetime(2025, 3, 25, k, tzinfo=UTC)) for k in range(3)]
    result = services.jobs_import(rows=jan_rows + new)
    assert (result.imported, result.already_present) == (len(new), len(jan_rows))
    assert GpuRun.objects.filter(external_id__in=[r["external_id"] for r in jan_rows]).count() == 0

    with pytest.raises(NotFound):  # not attached any more
        partitions.gpu_run_month_detach(month=date(2025, 1, 1))


def test_a_live_replay_whose_run_is_in_a_detached_month_is_refused_clearly():
    pool = setup_fleet()
    start = datetime(2025, 1, 20, 8, tzinfo=UTC)
    partitions.gpu_run_months_ensure(first=start, last=start)
    services.gpu_run_start(
        external_id="live-jan", model_slug="m1", pool=pool, node_name="a0", started_at=start
    )
    services.gpu_run_finish(
        external_id="live-jan", status="succeeded", finished_at=start + timedelta(minutes=9)
    )
    services.cost_aggregates_refresh()
    partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    with pytest.raises(ValidationError, match="detached"):
        services.gpu_run_start(
            external_id="live-jan", model_slug="m1", pool=pool, node_name="a0", started_at=start
        )
    assert not GpuRun.objects.filter(external_id="live-jan").exists()
    assert GpuRunKey.objects.filter(external_id="live-jan").count() == 1


def test_the_beat_task_makes_the_months_ahead():
    from infra_costs import tasks

    now = datetime.now(UTC)
    tasks.refresh_cost_aggregates()
    names = attached()
    for k in range(partitions.AHEAD_MONTHS + 1):
        y, m = divmod(now.month - 1 + k, 12)
        assert partitions.partition_name(date(now.year + y, m + 1, 1)) in names


def test_the_beat_task_still_refreshes_the_aggregates_when_the_months_cannot_be_made(
    monkeypatch,
):
    from django.db import OperationalError

    from infra_costs import tasks

    def refused(**kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    hour = datetime(2026, 3, 2, 9, tzinfo=UTC)
    CostHourDirty.objects.create(hour=hour)
    monkeypatch.setattr(partitions, "gpu_run_partitions_ahead", refused)
    tasks.refresh_cost_aggregates()
    assert not CostHourDirty.objects.filter(hour=hour).exists()


def test_the_command_lists_makes_and_detaches_and_refuses_bad_input():
    from io import StringIO

    from django.core.management import CommandError, call_command

    setup_fleet()
    services.jobs_import(rows=month_jobs())
    services.cost_aggregates_refresh()
    out = StringIO()
    call_command("gpu_run_partitions", "--ahead", "1", stdout=out)
    assert "infra_costs_gpurun_p2025_02" in out.getvalue()
    assert "infra_costs_gpurun_default" in out.getvalue()
    out = StringIO()
    call_command("gpu_run_partitions", "--detach", "2025-01", "--drop", stdout=out)
    assert "infra_costs_gpurun_p2025_01 dropped." in out.getvalue()
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass('infra_costs_gpurun_p2025_01')")
        assert cur.fetchone()[0] is None
    for bad in (["--detach", "2025-13"], ["--detach", "2025-01"], ["--drop"], ["--ahead", "99"]):
        with pytest.raises(CommandError):
            call_command("gpu_run_partitions", *bad, stdout=StringIO())
