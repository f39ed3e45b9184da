#!/usr/bin/env python
"""Year-scale bench of the unit-cost report (issue 16, "A year of history").

A fleet of 50 GPU nodes in 2 pools over the year 2026 (uptime 06:00-22:00 on odd nodes, around
the clock on even ones; a rate change on 2026-07-01 12:00), and --runs GPU runs spread over it.
Steps, each timed:

1. import: the runs as one CSV through `services.jobs_import_csv` (the `import_jobs` path:
   COPY, set-based checks, insert, then the per-hour aggregates of the touched hours, in the
   import's transaction);
2. maintenance: --live live runs started and finished (`gpu_run_start` / `gpu_run_finish`);
   the finish's UPDATE and its trigger (which marks the run's hours dirty) are timed, against
   the same UPDATE with the trigger disabled (`ALTER TABLE … DISABLE TRIGGER`); then the refresh of
   those hours;
3. the 1-year report (day windows) from the aggregates, cold and warm, and by the full
   recomputation (`allocation.sql`); every figure compared (to 1e-6 USD).

The machine is small: --runs scales the data down (the issue's figure is 10M); the summary
extrapolates import and full-recomputation time linearly in runs (measured slope), while the
aggregate report depends on hours × nodes, not on runs. Targets: maintenance < 1 ms per
finished job, 1-year report < 2 s, agreement to 1e-6, import of 1M rows <= 20 s (extrapolated).

The runs table is partitioned by month of `started_at` (migration infra_costs 0007): the import
makes the year's month partitions and claims the external ids in `infra_costs_gpurunkey`.

The database (default gpucredits_bench_year) is created when missing and migrated; its
infra_costs tables are emptied at every run.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_year"
START, END = date(2026, 1, 1), date(2027, 1, 1)
NODES = 50
TOLERANCE = Decimal("0.000001")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/year.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", default=None, help=f"default: {DEFAULT_URL}")
    p.add_argument("--runs", type=int, default=500_000, help="runs over the year (default 500k)")
    p.add_argument("--live", type=int, default=200, help="live runs for the maintenance cost")
    return p.parse_args(argv)


def setup_fleet(cur, p0: datetime) -> None:
    cur.execute(
        "TRUNCATE infra_costs_gpurun, infra_costs_gpurunkey, infra_costs_uptimeinterval, "
        "infra_costs_node, infra_costs_poolrate, infra_costs_schedulesetpoint, "
        "infra_costs_nodepool, infra_costs_costhourdirty, infra_costs_costhouruptime, "
        "infra_costs_costhournode, infra_costs_costhourmodel CASCADE"
    )
    # The year's month partitions are dropped too, so the import makes them, as a history
    # imported into a database that has not seen it (as `bench/unit_costs.py --import` does by
    # default); kept, they would be empty months that the import inserts into row by row.
    from infra_costs import partitions

    for part in partitions.gpu_run_partitions():
        if part.month and part.month.year == p0.year:
            cur.execute(f"ALTER TABLE infra_costs_gpurun DETACH PARTITION {part.name}")
            cur.execute(f"DROP TABLE {part.name}")
    cur.execute(
        "INSERT INTO infra_costs_nodepool (slug, gpu_type, description, sla_queue_wait_s, "
        "min_nodes, timezone, created_at) VALUES "
        "('year-a100', 'A100', '', 60, 1, 'UTC', now()), "
        "('year-l4', 'L4', '', 60, 1, 'UTC', now())"
    )
    cur.execute(
        """
        INSERT INTO infra_costs_poolrate (pool_id, hourly_rate_usd, effective_from, reason,
                                          created_at)
        SELECT p.id, r.rate, r.f, 'bench', now()
        FROM infra_costs_nodepool p
        JOIN (VALUES ('year-a100', 2.50, %(p0)s::timestamptz - interval '1 day'),
                     ('year-a100', 2.80, timestamptz '2026-07-01 12:00+00'),
                     ('year-l4', 0.80, %(p0)s::timestamptz - interval '1 day'))
             AS r(slug, rate, f) ON r.slug = p.slug
        """,
        {"p0": p0},
    )
    cur.execute(
        """
        INSERT INTO infra_costs_node (pool_id, name, provider, provider_ref, capacity_type,
                                      is_primary, state, transition, health, slots,
                                      billing_kind, created_at)
        SELECT p.id, p.slug || '-' || lpad(k::text, 2, '0'), '', '', 'on_demand', false,
               'cold', '', 'ok', 1, '', now()
        FROM infra_costs_nodepool p, generate_series(1, %(half)s) k
        """,
        {"half": NODES // 2},
    )
    cur.execute(
        """
        INSERT INTO infra_costs_uptimeinterval (node_id, pool_id, started_at, ended_at, source,
                                                rate_kind, created_at)
        SELECT n.id, n.pool_id, d + iv.s, d + iv.e, 'imported', 'on_demand', now()
        FROM infra_costs_node n
        CROSS JOIN generate_series(%(p0)s::timestamptz, %(p0)s::timestamptz + interval '364 days',
                                   interval '1 day') d
        CROSS JOIN (VALUES (interval '6 hours', interval '22 hours', 0),
                           (interval '21 hours', interval '30 hours', 1)) iv(s, e, even_only)
        WHERE iv.even_only = 0 OR mod(n.id, 2) = 0
        """,
        {"p0": p0},
    )


def runs_csv(cur, runs: int, p0: datetime) -> str:
    """The runs as a CSV (header + rows), made by PostgreSQL."""
    cur.execute("SELECT setseed(0.16)")
    out = io.StringIO()
    with cur.copy(
        f"""
        COPY (
            SELECT 'y-' || k AS external_id,
                   'model-' || (1 + floor(power(random(), 1.5) * 8)) AS model,
                   n.name AS node,
                   to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
                       AS started_at,
                   to_char((s + dur) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
                       AS finished_at,
                   CASE WHEN st < 0.90 THEN 'succeeded' WHEN st < 0.97 THEN 'failed'
                        ELSE 'cancelled' END AS status
            FROM (
                SELECT k, 1 + floor(random() * {NODES})::int AS nk,
                       timestamptz '{p0.isoformat()}'
                           + floor(random() * 365) * interval '1 day'
                           + interval '6 hours' + random() * interval '15 hours 50 min' AS s,
                       (20 + random() * 280) * interval '1 second' AS dur,
                       random() AS st
                FROM generate_series(1, {int(runs)}) k
            ) r
            JOIN (SELECT name, row_number() OVER (ORDER BY id) AS nk FROM infra_costs_node) n
              USING (nk)
        ) TO STDOUT WITH (FORMAT csv, HEADER)
        """
    ) as copy:
        for chunk in copy:
            out.write(bytes(chunk).decode())
    return out.getvalue()


def flatten(report: dict) -> dict[str, str]:
    out = {}
    for section in ("pools", "models"):
        for row in report[section]:
            key = row.get("pool") or row.get("model")
            for k, v in row.items():
                out[f"{section}.{key}.{k}"] = v
    for k, v in report["totals"].items():
        out[f"totals.{k}"] = v
    return out


def differences(a: dict, b: dict) -> list[str]:
    fa, fb = flatten(a), flatten(b)
    diffs = []
    for key in sorted(set(fa) | set(fb)):
        x, y = fa.get(key), fb.get(key)
        try:
            if x is not None and y is not None and abs(Decimal(x) - Decimal(y)) <= TOLERANCE:
                continue
        except (ArithmeticError, ValueError, TypeError):
            pass
        if x != y:
            diffs.append(f"{key}: {x} vs {y}")
    return diffs


def main(argv=None) -> int:
    args = parse_args(argv)
    url = args.database_url or (
        _django.database_url() if "DATABASE_URL" in os.environ else DEFAULT_URL
    )
    if _django.ensure_database(url):
        print(f"created database {_django.database_name(url)}")
    _django.setup(url)
    from django.db import connection, transaction

    from infra_costs import services
    from infra_costs.allocation import hourly, unit_cost_report
    from infra_costs.models import CostHourDirty, CostHourNode, NodePool

    p0 = datetime(START.year, START.month, START.day, tzinfo=UTC)
    with transaction.atomic(), connection.cursor() as cur:
        setup_fleet(cur, p0)
    services.cost_aggregates_refresh()  # the uptime's hours
    with connection.cursor() as cur:
        t0 = time.perf_counter()
        text = runs_csv(cur, args.runs, p0)
        gen_s = time.perf_counter() - t0

    refresh_times = []
    refresh = hourly.refresh

    def timed_refresh():
        t = time.perf_counter()
        try:
            return refresh()
        finally:
            refresh_times.append(time.perf_counter() - t)

    hourly.refresh = timed_refresh
    t0 = time.perf_counter()
    try:
        result = services.jobs_import_csv(stream=io.StringIO(text))
    finally:
        hourly.refresh = refresh
    import_s = time.perf_counter() - t0
    agg_s = sum(refresh_times)
    del text
    with connection.cursor() as cur:
        cur.execute("ANALYZE infra_costs_gpurun")
    print(
        f"import: {result.imported:,} runs in {import_s:.1f} s, of which {agg_s:.1f} s the "
        f"per-hour aggregates of the touched hours (CSV made in {gen_s:.1f} s)"
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE c.relname <> 'infra_costs_gpurun_default'), "
            "(SELECT count(*) FROM infra_costs_gpurun_default) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'infra_costs_gpurun'::regclass"
        )
        months, in_default = cur.fetchone()
    print(f"partitions: {months} months attached, {in_default} runs in the default partition")

    # Maintenance: live runs finishing, with and without the triggers.
    pool = NodePool.objects.get(slug="year-a100")
    t_base = datetime(2026, 12, 31, 10, tzinfo=UTC)
    timed = {"with trigger": [], "without": []}
    # The series "without" runs with the finish's trigger disabled (this bench's database
    # only; enabled again after), not with `SET LOCAL session_replication_role = replica` per
    # transaction as before: setting that resets the session's plan cache, which cost the
    # bare finish more than the trigger it skipped (it came out 0.4-0.6 ms slower).
    # In ABBA order (a quarter of the runs each), so a drift over the series (the machine, the
    # December partition's dead rows) weighs on both alike.
    quarter = max(1, args.live // 4)
    order = ("with trigger", "without", "without", "with trigger")
    for block, label in enumerate(order):
        if block in (1, 3):
            state = "DISABLE" if label == "without" else "ENABLE"
            with connection.cursor() as cur:
                cur.execute(f"ALTER TABLE infra_costs_gpurun {state} TRIGGER gpurun_dirty_update")
        for i in range(block * quarter, (block + 1) * quarter):
            ext = f"live-{label[:4]}-{i}"
            # every block over the same hours, so the triggered blocks mark them all dirty
            start = t_base + timedelta(seconds=148 * (i - block * quarter) + block)
            services.gpu_run_start(
                external_id=ext,
                model_slug="model-1",
                pool=pool,
                node_name="year-a100-01",
                started_at=start,
            )
            with transaction.atomic():
                t0 = time.perf_counter()
                services.gpu_run_finish(  # as the worker calls it: with the recorded start
                    external_id=ext,
                    status="succeeded",
                    finished_at=start + timedelta(seconds=90),
                    recorded_start=start,
                )
                timed[label].append(time.perf_counter() - t0)
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE infra_costs_gpurun ENABLE TRIGGER gpurun_dirty_update")
    # (the untriggered runs' hours are the triggered runs' hours: the refresh sees them all)
    finish_ms = statistics.median(timed["with trigger"]) * 1000
    bare_ms = statistics.median(timed["without"]) * 1000
    dirty = CostHourDirty.objects.count()
    t0 = time.perf_counter()
    services.cost_aggregates_refresh()
    refresh_s = time.perf_counter() - t0
    print(
        f"maintenance: finish UPDATE {finish_ms:.3f} ms median with the trigger, "
        f"{bare_ms:.3f} ms without ({finish_ms - bare_ms:+.3f} ms); refresh of the {dirty} "
        f"dirty hours {refresh_s * 1000:.0f} ms"
    )

    # The 1-year report.
    t0 = time.perf_counter()
    agg = unit_cost_report(START, END, window="day")
    cold_s = time.perf_counter() - t0
    warm = []
    for _ in range(3):
        t0 = time.perf_counter()
        agg = unit_cost_report(START, END, window="day")
        warm.append(time.perf_counter() - t0)
    report_s = statistics.median(warm)
    eligible = hourly.eligible
    hourly.eligible = lambda inp: False
    try:
        t0 = time.perf_counter()
        full = unit_cost_report(START, END, window="day")
        full_s = time.perf_counter() - t0
    finally:
        hourly.eligible = eligible
    diffs = differences(agg, full)
    exact = agg == full
    hours_rows = CostHourNode.objects.count()
    runs = result.imported + 2 * args.live
    print(
        f"1-year report (day windows): {report_s:.2f} s from aggregates ({cold_s:.2f} s cold; "
        f"{hours_rows:,} node-hours), {full_s:.2f} s by the full recomputation; "
        f"{'identical' if exact else f'{len(diffs)} figures differ'}"
    )
    for d in diffs[:20]:
        print("  " + d)

    # The aggregates' refresh grows with the runs of the touched hours (every hour here): also
    # extrapolated linearly, which overstates it a little (the uptime's share is per hour).
    per_run_import = (import_s - agg_s) / max(result.imported, 1)
    per_run_agg = agg_s / max(result.imported, 1)
    per_run_full = full_s / max(runs, 1)
    print()
    print(f"extrapolated (linear in runs; measured on {runs:,}):")
    print(
        f"{'runs':>12}{'import s':>12}{'(+ aggregates s)':>18}{'full report s':>16}"
        f"{'aggregate report s':>22}"
    )
    for n in (1_000_000, 10_000_000, 100_000_000):
        print(
            f"{n:>12,}{per_run_import * n:>12.0f}{per_run_agg * n:>18.0f}{per_run_full * n:>16.1f}"
            f"{report_s:>22.2f}"
        )
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} cores)")
    ok = True
    for name, passed in (
        ("maintenance < 1 ms per finished job", finish_ms - bare_ms < 1.0),
        ("1-year report < 2 s", report_s < 2.0),
        ("aggregates == full recomputation (1e-6 USD)", not diffs),
        (
            "import of 1M rows <= 20 s (extrapolated, with the aggregates)",
            (per_run_import + per_run_agg) * 1_000_000 <= 20.0,
        ),
    ):
        print(f"target {name}: {'PASS' if passed else 'MISS'}")
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
