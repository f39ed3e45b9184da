"""The GPU runs partitioned by month of `started_at` (migration 0007, `infra_costs.partitions`):
rows land in their month's partition or the default one, imports make the months they need,
a new month takes its rows out of the default partition, external_id stays unique across
partitions (re-import, live replay, a detached month), detaching a month leaves the other
months' reports as they were, a detached month's hours stay frozen (later writes do not wipe
its figures) and attaching it again brings its full report back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from config.errors import NotFound, ValidationError
from infra_costs import partitions, services
from infra_costs.allocation import unit_cost_report
from infra_costs.imports.results import ImportRefused
from infra_costs.models import (
    CostHourDirty,
    DetachedRunMonth,
    GpuRun,
    GpuRunKey,
    Node,
    NodePool,
    UptimeInterval,
)
from tests.infra_costs.test_cost_aggregates import full_report

pytestmark = pytest.mark.django_db

JAN = datetime(2025, 1, 1, tzinfo=UTC)
FEB = datetime(2025, 2, 1, tzinfo=UTC)
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


def test_the_command_attaches_a_month_again_and_says_why_it_cannot():
    from io import StringIO

    from django.core.management import CommandError, call_command

    from infra_costs.management.commands.gpu_run_partitions import Command

    assert "--attach" in Command().create_parser("manage.py", "gpu_run_partitions").format_help()
    setup_fleet()
    services.jobs_import(rows=month_jobs())
    services.cost_aggregates_refresh()
    jan = unit_cost_report(date(2025, 1, 1), date(2025, 2, 1))
    errors = {
        ("--attach", "2025-01"): "2025-01 is not detached",
        ("--attach", "2025-1x"): "Not a month",
        ("--attach", "2025-01", "--drop"): "--drop goes with --detach",
        ("--attach", "2025-01", "--detach", "2025-02"): "one at a time",
    }
    for args, message in errors.items():
        with pytest.raises(CommandError, match=message):
            call_command("gpu_run_partitions", *args, stdout=StringIO())

    call_command("gpu_run_partitions", "--detach", "2025-01", stdout=StringIO())
    out = StringIO()
    call_command("gpu_run_partitions", "--attach", "2025-01", stdout=out)
    text = out.getvalue()
    assert "infra_costs_gpurun_p2025_01 attached" in text
    assert "745 hours recomputed" in text
    assert "infra_costs_gpurun_p2025_01 " in text.split("recomputed", 1)[1]  # the list
    assert not CostHourDirty.objects.exists()
    assert unit_cost_report(date(2025, 1, 1), date(2025, 2, 1)) == jan

    call_command("gpu_run_partitions", "--detach", "2025-02", "--drop", stdout=StringIO())
    with pytest.raises(CommandError, match="dropped"):
        call_command("gpu_run_partitions", "--attach", "2025-02", stdout=StringIO())


def january() -> dict:
    """January up to the 25th, day windows (no run crosses the period's end)."""
    return unit_cost_report(date(2025, 1, 1), date(2025, 1, 25))


def busy(report: dict) -> list:
    return [(p["pool"], p["uptime_hours"], p["busy_hours"]) for p in report["pools"]]


def test_a_detached_months_figures_survive_later_writes_to_its_hours_and_the_refresh():
    pool = setup_fleet()
    services.jobs_import(rows=month_jobs())
    services.cost_aggregates_refresh()
    before, feb = january(), unit_cost_report(date(2025, 2, 1), date(2025, 3, 1))
    assert before == full_report("2025-01-01", "2025-01-25")
    assert before["totals"]["generations"] > 0 and Decimal(before["pools"][0]["busy_hours"]) > 0

    partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    assert january() == before

    # An import of uptime inside January (and over the first hour of February, which holds
    # the end of a run started in January) dirties those hours and refreshes them: they keep
    # their stored figures instead of being recomputed without the detached runs.
    services.uptime_import(
        rows=[
            {
                "node": "a2",
                "pool": "pa",
                "started_at": iso(JAN + timedelta(days=5)),
                "ended_at": iso(FEB + timedelta(minutes=30)),
            }
        ]
    )
    assert january() == before
    assert unit_cost_report(date(2025, 2, 1), date(2025, 3, 1)) == feb
    # Uptime recorded without an import (the fleet's way): dirty marks, which the report
    # treats as clean, and the refresh drops.
    a2 = Node.objects.get(name="a2")
    UptimeInterval.objects.create(
        node=a2,
        pool=pool,
        started_at=JAN + timedelta(days=2, hours=3),
        ended_at=JAN + timedelta(days=4, hours=5),
        source="recorded",
    )
    assert CostHourDirty.objects.filter(hour__gte=JAN, hour__lt=FEB).exists()
    assert january() == before
    services.cost_aggregates_refresh()
    assert january() == before
    assert not CostHourDirty.objects.filter(hour__gte=JAN, hour__lte=FEB).exists()

    # A rate change inside the month: its costs follow the new rate, its hours stay as they
    # were (busy time included), before and after a refresh.
    services.pool_rate_add(
        pool=pool,
        hourly_rate_usd=Decimal("2.60"),
        effective_from=datetime(2025, 1, 10, 12, tzinfo=UTC),
        actor=None,
    )
    rated = january()
    assert rated["totals"]["infra_cost_usd"] != before["totals"]["infra_cost_usd"]
    assert busy(rated) == busy(before)
    assert rated["totals"]["generations"] == before["totals"]["generations"]
    services.cost_aggregates_refresh()
    assert january() == rated

    # A run of January written meanwhile lands in the default partition; frozen hours do not
    # count it yet.
    start = datetime(2025, 1, 20, 5, tzinfo=UTC)
    services.gpu_run_start(
        external_id="late-jan", model_slug="m1", pool=pool, node_name="a0", started_at=start
    )
    services.gpu_run_finish(
        external_id="late-jan", status="succeeded", finished_at=start + timedelta(minutes=30)
    )
    assert where("late-jan") == "infra_costs_gpurun_default"
    services.cost_aggregates_refresh()
    assert january() == rated

    # Attached again: every write made meanwhile counts, as the full engine says.
    done = partitions.gpu_run_month_attach(month=date(2025, 1, 1))
    assert (done.name, done.moved) == ("infra_costs_gpurun_p2025_01", 1)
    assert where("late-jan") == "infra_costs_gpurun_p2025_01"
    assert january() == full_report("2025-01-01", "2025-01-25")  # hours dirty: on the fly
    services.cost_aggregates_refresh()
    after = january()
    assert after == full_report("2025-01-01", "2025-01-25")
    assert after["totals"]["generations"] == before["totals"]["generations"] + 1
    assert busy(after) != busy(before)  # the uptime of a2 counts now
    feb_now = unit_cost_report(date(2025, 2, 1), date(2025, 3, 1))
    assert feb_now == full_report("2025-02-01", "2025-03-01")


def test_attaching_a_detached_month_again_restores_its_report_and_frees_its_hours():
    setup_fleet()
    rows = month_jobs()
    services.jobs_import(rows=rows)
    services.cost_aggregates_refresh()
    jan = unit_cost_report(date(2025, 1, 1), date(2025, 2, 1), window="hour")
    feb = unit_cost_report(date(2025, 2, 1), date(2025, 3, 1))
    assert jan == full_report("2025-01-01", "2025-02-01", window="hour")

    partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    record = DetachedRunMonth.objects.get(month=date(2025, 1, 1))
    assert (record.table_name, record.dropped) == ("infra_costs_gpurun_p2025_01", False)
    # Frozen: the month and the hour of February the run started on 31 January reaches.
    assert (record.frozen_from, record.frozen_until) == (JAN, FEB + timedelta(hours=1))

    done = partitions.gpu_run_month_attach(month=date(2025, 1, 1))
    jan_rows = [r for r in rows if r["started_at"].startswith("2025-01")]
    assert (done.rows, done.moved, done.hours) == (len(jan_rows), 0, 31 * 24 + 1)
    assert "infra_costs_gpurun_p2025_01" in attached()
    assert not DetachedRunMonth.objects.exists()
    assert CostHourDirty.objects.filter(hour__gte=JAN, hour__lte=FEB).count() == done.hours
    assert services.cost_aggregates_refresh() == done.hours
    assert unit_cost_report(date(2025, 1, 1), date(2025, 2, 1), window="hour") == jan
    assert unit_cost_report(date(2025, 2, 1), date(2025, 3, 1)) == feb
    assert GpuRun.objects.count() == len(rows)

    # Its hours are live again: a write recomputes them with the runs.
    partitions.gpu_run_month_detach(month=date(2025, 1, 1), drop=True)
    assert DetachedRunMonth.objects.get(month=date(2025, 1, 1)).dropped
    with pytest.raises(ValidationError, match="dropped"):
        partitions.gpu_run_month_attach(month=date(2025, 1, 1))


def test_a_month_detached_without_runs_freezes_no_hour():
    setup_fleet()
    partitions.gpu_run_months_ensure(first=JAN, last=JAN)
    services.cost_aggregates_refresh()
    partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    record = DetachedRunMonth.objects.get(month=date(2025, 1, 1))
    assert record.frozen_until == record.frozen_from  # nothing to keep
    services.uptime_import(
        rows=[{"node": "a2", "pool": "pa", "started_at": iso(JAN), "ended_at": iso(FEB)}]
    )
    report = january()
    assert report == full_report("2025-01-01", "2025-01-25")
    assert report["pools"][0]["uptime_hours"] == str(Decimal(24 * 24 * 3).quantize(Decimal("1e-6")))
    assert partitions.gpu_run_month_attach(month=date(2025, 1, 1)).hours == 0


def test_attaching_refuses_a_month_not_detached_or_with_runs_outside_it():
    setup_fleet()
    services.jobs_import(rows=month_jobs())
    services.cost_aggregates_refresh()
    with pytest.raises(NotFound, match="not detached"):
        partitions.gpu_run_month_attach(month=date(2025, 1, 1))
    partitions.gpu_run_month_detach(month=date(2025, 1, 1))
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE infra_costs_gpurun_p2025_01 SET started_at = started_at + interval '40 days',"
            " finished_at = finished_at + interval '40 days' WHERE external_id IN ('j0', 'j2')"
        )
    with pytest.raises(ValidationError, match="2 runs started outside 2025-01"):
        partitions.gpu_run_month_attach(month=date(2025, 1, 1))
    assert "infra_costs_gpurun_p2025_01" not in attached()  # nothing written
    assert DetachedRunMonth.objects.filter(month=date(2025, 1, 1)).exists()
    assert not CostHourDirty.objects.filter(hour__gte=JAN, hour__lt=FEB).exists()

    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # (the UPDATE's deferred FK checks)
        cur.execute("DROP TABLE infra_costs_gpurun_p2025_01")
    with pytest.raises(ValidationError, match="no longer exists"):
        partitions.gpu_run_month_attach(month=date(2025, 1, 1))
