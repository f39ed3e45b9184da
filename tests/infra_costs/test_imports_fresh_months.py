"""Imports into months that have no partition yet (issue 16, docs/performance.md "Imports,
issue 16: the insert and the FK checks"): such a month is loaded into a table of its own,
indexed once and attached. The result must be the same as the insert into an existing month:
same rows and ids taken, same hours marked dirty, same run-length bound, same aggregates and
report; rows of the month that a live run left in the default partition are moved in; the
foreign key (node, pool) is checked; two concurrent imports of the same ids write each run
once."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction

from infra_costs import partitions, services
from infra_costs.allocation import unit_cost_report
from infra_costs.models import CostHourDirty, CostRunSpan, GpuRun, GpuRunKey, Node, NodePool
from tests.infra_costs.test_cost_aggregates import full_report
from tests.infra_costs.test_partitions import JAN, attached, job, month_jobs, setup_fleet, where

FRESH = (
    "infra_costs_gpurun_p2025_01",
    "infra_costs_gpurun_p2025_02",
    "infra_costs_gpurun_p2025_03",
)


def state() -> tuple:
    """What an import leaves for the aggregates: the dirty hours and the run-length bound."""
    return (
        sorted(CostHourDirty.objects.values_list("hour", flat=True)),
        CostRunSpan.objects.get(pk=1).max_us,
    )


def runs() -> list[tuple]:
    return sorted(
        GpuRun.objects.values_list(
            "external_id",
            "model_slug",
            "node__name",
            "pool_id",
            "started_at",
            "finished_at",
            "status",
            "source",
        )
    )


def fk_checks() -> None:
    """The deferred foreign key checked now (a test's transaction never commits)."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.mark.django_db
def test_a_fresh_month_import_equals_the_insert_into_existing_months(monkeypatch):
    setup_fleet()
    rows = month_jobs()
    rows.append(job(900, datetime(2025, 2, 10, 22, 30, tzinfo=UTC), minutes=200))  # 4 hours
    marked = []  # the hours dirty when the import refreshes the aggregates
    refresh = services.hourly.refresh
    monkeypatch.setattr(
        services.hourly,
        "refresh",
        lambda: (
            marked.append(sorted(CostHourDirty.objects.values_list("hour", flat=True))) or refresh()
        ),
    )
    # The reference: the insert into existing (empty) months; then all of it undone.
    partitions.gpu_run_months_ensure(first=JAN, last=datetime(2025, 3, 1, tzinfo=UTC))
    CostHourDirty.objects.all().delete()
    before = state()
    result = services.jobs_import(rows=rows)
    assert result.imported == len(rows)
    expected_runs, expected_state = runs(), state()
    report = unit_cost_report(date(2025, 1, 1), date(2025, 4, 1))
    assert expected_state[1] > before[1] and marked[0]
    GpuRun.objects.all().delete()
    services.cost_aggregates_refresh()
    for month in (1, 2, 3):
        partitions.gpu_run_month_detach(month=date(2025, month, 1), drop=True)
    CostRunSpan.objects.filter(pk=1).update(max_us=before[1])
    CostHourDirty.objects.all().delete()
    assert not GpuRunKey.objects.exists()

    assert not set(FRESH) & attached()
    calls = []
    load = partitions.gpu_run_months_load
    partitions.gpu_run_months_load = lambda **kw: calls.append(kw["months"]) or load(**kw)
    try:
        result = services.jobs_import(rows=rows)
    finally:
        partitions.gpu_run_months_load = load
    assert [[m.month for m in months] for months in calls] == [[1, 2, 3]]  # all three loaded
    assert (result.imported, result.already_present) == (len(rows), 0)
    assert set(FRESH) <= attached()
    for r in rows:
        assert (
            where(r["external_id"])
            == f"infra_costs_gpurun_p{r['started_at'][:7].replace('-', '_')}"
        )
    assert runs() == expected_runs
    assert state() == expected_state
    assert marked[1] == marked[0]
    assert GpuRunKey.objects.count() == len(rows)
    assert unit_cost_report(date(2025, 1, 1), date(2025, 4, 1)) == report
    assert report == full_report("2025-01-01", "2025-04-01")
    # The partitions took the runs' indexes and key (not built again by ATTACH).
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE c.relname = 'infra_costs_gpurun_p2025_02_run_external_id'"
        )
        assert cur.fetchone()[0] == 1
        cur.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'infra_costs_gpurun_p2025_02'::regclass"
        )
        assert cur.fetchone()[0] == 5
        cur.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = "
            "'infra_costs_gpurun_p2025_02'::regclass AND contype = 'f'"
        )
        assert cur.fetchone()[0] == 1
    fk_checks()
    again = services.jobs_import(rows=rows)  # a re-import writes nothing
    assert (again.imported, again.already_present) == (0, len(rows))
    assert runs() == expected_runs


@pytest.mark.django_db
def test_a_fresh_month_takes_the_runs_a_live_start_left_in_the_default_partition():
    pool = setup_fleet()
    start = datetime(2025, 2, 3, 9, tzinfo=UTC)
    assert "infra_costs_gpurun_p2025_02" not in attached()
    live = services.gpu_run_start(
        external_id="live-feb", model_slug="m1", pool=pool, node_name="a1", started_at=start
    )
    assert where("live-feb") == "infra_costs_gpurun_default"
    rows = month_jobs()
    result = services.jobs_import(rows=rows)
    assert result.imported == len(rows)
    assert where("live-feb") == "infra_costs_gpurun_p2025_02"
    assert GpuRun.objects.get(external_id="live-feb").pk == live.pk
    ids = list(GpuRun.objects.values_list("id", flat=True))
    assert len(ids) == len(set(ids)) == len(rows) + 1  # ids from the one identity sequence
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM infra_costs_gpurun_default")
        assert cur.fetchone()[0] == 0
    # A mixed import: an existing month takes the insert, a fresh one is loaded.
    more = [
        job(2000, datetime(2025, 3, 28, tzinfo=UTC)),
        job(2001, datetime(2025, 5, 2, tzinfo=UTC)),
    ]
    result = services.jobs_import(rows=more)
    assert result.imported == 2
    assert where("j2000") == "infra_costs_gpurun_p2025_03"
    assert where("j2001") == "infra_costs_gpurun_p2025_05"
    fk_checks()


@pytest.mark.django_db
def test_runs_at_the_ends_of_the_calendar_land_in_the_default_partition():
    setup_fleet()
    far = [
        job(1, datetime(9999, 12, 30, tzinfo=UTC)),
        job(2, datetime(5, 3, 1, tzinfo=UTC)),
    ]
    for rows in (far[:1], far):
        result = services.jobs_import(rows=rows, skip_invalid=True)
        assert not result.errors
    assert where("j1") == "infra_costs_gpurun_default"
    assert where("j2") == "infra_costs_gpurun_default"  # (more than 20 years before 9999)


@pytest.mark.django_db
def test_a_run_of_a_node_of_another_pool_is_refused_by_the_foreign_key():
    pool = setup_fleet()
    other = NodePool.objects.create(slug="pb", gpu_type="A100")
    node = Node.objects.get(name="a0")
    with pytest.raises(IntegrityError, match="gpurun_node_pool_fk"), transaction.atomic():
        GpuRun.objects.create(
            external_id="bad",
            model_slug="m1",
            pool=other,
            node=node,
            status="running",
            source="live",
            started_at=JAN,
        )
        fk_checks()
    GpuRun.objects.create(  # its own pool: accepted
        external_id="good",
        model_slug="m1",
        pool=pool,
        node=node,
        status="running",
        source="live",
        started_at=JAN,
    )
    fk_checks()
    assert pool.pk != other.pk


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_of_the_same_ids_write_each_run_once():
    """Two sessions import the same rows (months with no partition yet) at the same time: each
    id gets exactly one run, one import reports them imported and the other already present,
    and neither fails."""
    setup_fleet(start=datetime(2023, 12, 25, tzinfo=UTC))
    rows = [job(k, datetime(2024, 1 + k % 3, 1 + k % 27, k % 20, tzinfo=UTC)) for k in range(120)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(services.jobs_import(rows=rows))
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert sorted((r.imported, r.already_present) for r in results) == [
            (0, len(rows)),
            (len(rows), 0),
        ]
        assert GpuRun.objects.count() == GpuRunKey.objects.count() == len(rows)
        assert len(set(GpuRun.objects.values_list("external_id", flat=True))) == len(rows)
    finally:
        for month in (1, 2, 3):  # (DDL outlives the test's flush)
            name = partitions.partition_name(date(2024, month, 1))
            with connection.cursor() as cur:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
                if cur.fetchone()[0]:
                    cur.execute("TRUNCATE infra_costs_gpurun")
                    cur.execute(f"ALTER TABLE infra_costs_gpurun DETACH PARTITION {name}")
                    cur.execute(f"DROP TABLE {name}")


def test_the_staged_month_of_a_start_is_its_utc_month_whatever_the_offset():
    from datetime import timedelta, timezone

    from infra_costs.imports.jobs import _month_key

    plus1, minus1 = timezone(timedelta(hours=1)), timezone(timedelta(hours=-1))
    assert _month_key(datetime(2026, 2, 1, 0, 30, tzinfo=plus1)) == 2026 * 12 + 0  # 31 Jan UTC
    assert _month_key(datetime(2026, 1, 31, 23, 30, tzinfo=minus1)) == 2026 * 12 + 1  # 1 Feb
    assert _month_key(datetime(2026, 3, 1, tzinfo=UTC)) == 2026 * 12 + 2
    assert _month_key(datetime(1, 1, 1, 0, 30, tzinfo=plus1)) < _month_key(datetime.min)
    assert _month_key(datetime(9999, 12, 31, 23, 30, tzinfo=minus1)) > (
        _month_key(datetime(9999, 12, 31, tzinfo=UTC))
    )


@pytest.mark.django_db
def test_rows_per_month_as_staged_agree_with_postgresql_month_buckets():
    import random

    from infra_costs import partitions
    from infra_costs.imports.jobs import _buckets, _month_key

    rnd = random.Random(16)
    starts = [
        datetime(2024, 11, 1, tzinfo=UTC) + timedelta(minutes=rnd.randrange(0, 60 * 24 * 700))
        for _ in range(500)
    ] + [datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)]
    staged: dict[int, int] = {}
    for t in starts:
        staged[_month_key(t)] = staged.get(_month_key(t), 0) + 1
    months = partitions.gpu_run_import_months(first=min(starts), last=max(starts))
    bounds = [*months, partitions.next_month(months[-1])]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT width_bucket(t, %s::timestamptz[]), count(*) FROM unnest(%s::timestamptz[]) t "
            "GROUP BY 1",
            [bounds, starts],
        )
        assert _buckets(staged, months) == dict(cur.fetchall())


@pytest.mark.django_db
def test_a_file_of_more_months_than_staging_partitions_imports_every_row(monkeypatch):
    from infra_costs.imports import jobs

    monkeypatch.setattr(jobs, "_STAGE_MONTHS", 2)  # (the 3rd month on share the default)
    setup_fleet()
    rows = month_jobs()
    result = services.jobs_import(rows=rows)
    assert (result.imported, result.already_present, result.errors) == (len(rows), 0, {})
    assert set(FRESH) <= attached()
    for row in rows:
        month = datetime.fromisoformat(row["started_at"]).strftime("%Y_%m")
        assert where(row["external_id"]) == f"infra_costs_gpurun_p{month}"
    fk_checks()
    again = services.jobs_import(rows=rows)
    assert (again.imported, again.already_present) == (0, len(rows))
