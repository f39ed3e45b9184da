#!/usr/bin/env python
"""Unit-cost benchmark: the SQL allocation engine vs an independent pandas implementation.

Data (generated set-based in SQL once, reused by later runs; --regenerate rebuilds it):
90 days from 2026-01-01, 2 pools (`bench-a100` with a rate change at noon on day 46,
`bench-l4`), 40 nodes (even nodes up around the clock as two overlapping intervals a day, odd
ones 06:00-22:00), 1,000,000 jobs of 8 models on random nodes (90 % succeeded, 7 % failed,
3 % cancelled; 20-300 s), giving the ~50 % idle share of a real fleet.

Both paths compute spec §3's report for the whole period in the same run:

  sql     infra_costs.allocation.unit_cost_report(...) — the product's engine, end to end
          (inputs, set-based SQL, assembly, rounding);
  pandas  a separate implementation with numpy/pandas: the period's rows COPYed out of
          PostgreSQL (epoch microseconds) into DataFrames, then vectorised interval algebra
          (islands by cumulative max, uptime coverage by prefix sums + searchsorted).

Each path runs --repeat times (median reported); then every number of the two reports is
compared (to 1e-6) and the targets are checked: SQL < 10 s and at least 3x (day windows) or 2x
(hour windows) faster than pandas (issue 16). The SQL path reads the per-hour aggregates
(`infra_costs.allocation.hourly`), built once after generating (timed).
With --import, the jobs are also written out as an import_jobs CSV file, truncated and imported
back (`services.jobs_import_csv`: checks, insert, FK checks, the aggregates of every hour), then
re-imported; the first import is checked against 20 s per 1M rows (issue 16). Each import
prints where its time went (read + field checks + COPY, set-based checks, insert, aggregates,
COMMIT with the deferred FK checks).
Exit status 1 when the numbers differ or a target is missed.

The database (default gpucredits_bench_unit_costs) is created when missing and migrated.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/gpucredits_bench_unit_costs"
START = date(2026, 1, 1)
DAYS = 90
NODES = 40
JOBS = 1_000_000
MODELS = 8
TOLERANCE = 1e-6
TARGET_S = 10.0
TARGET_RATIO = {"day": 3.0, "hour": 2.0}  # issue 16
IMPORT_TARGET_S = 20.0  # issue 16: import_jobs of 1M rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/unit_costs.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--database-url", default=None, help=f"default: {DEFAULT_URL}")
    p.add_argument("--jobs", type=int, default=JOBS, help="jobs to generate (default 1,000,000)")
    p.add_argument("--days", type=int, default=DAYS, help="days of data (default 90)")
    p.add_argument("--window", choices=["day", "hour"], default="day")
    p.add_argument("--repeat", type=int, default=3, help="runs per path (median reported)")
    p.add_argument("--regenerate", action="store_true", help="drop and regenerate the data")
    p.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the SQL")
    p.add_argument(
        "--import",
        dest="import_jobs",
        action="store_true",
        help="also time the import of the generated jobs as a CSV file (the jobs are written "
        "out, truncated and imported back, then re-imported; issue 16: 1M rows <= 20 s)",
    )
    p.add_argument(
        "--import-into-existing-months",
        dest="import_existing",
        action="store_true",
        help="with --import: keep the (emptied) month partitions of the data, so the first "
        "import inserts into them; by default they are dropped and the import makes them, as "
        "an import of history into a database that has not seen those months",
    )
    return p.parse_args(argv)


# --- Data -------------------------------------------------------------------------------------


def generate(days: int, jobs: int, regenerate: bool) -> None:
    from django.db import connection, transaction

    from infra_costs.models import GpuRun

    existing = GpuRun.objects.filter(external_id__startswith="bench-").count()
    marker = f"bench:{days}:{jobs}"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT reason FROM infra_costs_poolrate WHERE reason LIKE %s LIMIT 1", ["bench:%"]
        )
        row = cur.fetchone()
    if existing == jobs and row and row[0] == marker and not regenerate:
        print(f"data: reusing {existing:,} jobs ({days} days)")
        return
    t0 = time.perf_counter()
    p0 = datetime(START.year, START.month, START.day, tzinfo=UTC)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "TRUNCATE infra_costs_gpurun, infra_costs_uptimeinterval, infra_costs_node, "
            "infra_costs_poolrate, infra_costs_schedulesetpoint, infra_costs_nodepool CASCADE"
        )
        cur.execute(
            "INSERT INTO infra_costs_nodepool (slug, gpu_type, description, sla_queue_wait_s, "
            "min_nodes, timezone, created_at) VALUES "
            "('bench-a100', 'A100', '', 60, 1, 'UTC', now()), "
            "('bench-l4', 'L4', '', 60, 1, 'UTC', now())"
        )
        cur.execute(
            """
            INSERT INTO infra_costs_poolrate (pool_id, hourly_rate_usd, effective_from, reason,
                                              created_at)
            SELECT p.id, r.rate, r.f, %(marker)s, now()
            FROM infra_costs_nodepool p
            JOIN (VALUES ('bench-a100', 2.50, %(p0)s::timestamptz - interval '31 days'),
                         ('bench-a100', 2.80, %(p0)s::timestamptz + interval '45 days 12 hours'),
                         ('bench-l4', 0.80, %(p0)s::timestamptz - interval '31 days'))
                 AS r(slug, rate, f) ON r.slug = p.slug
            """,
            {"p0": p0, "marker": marker},
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
        # Even nodes: 06:00-22:00 and 21:00-06:00 (+1 day), overlapping one hour (counts once);
        # odd nodes: 06:00-22:00.
        cur.execute(
            """
            INSERT INTO infra_costs_uptimeinterval (node_id, pool_id, started_at, ended_at, source,
                                                    rate_kind, created_at)
            SELECT n.id, n.pool_id, d + iv.s, d + iv.e, 'imported', 'on_demand', now()
            FROM infra_costs_node n
            CROSS JOIN generate_series(%(p0)s::timestamptz,
                                       %(p0)s::timestamptz + (%(days)s - 1) * interval '1 day',
                                       interval '1 day') d
            CROSS JOIN (VALUES (interval '6 hours', interval '22 hours', 0),
                               (interval '21 hours', interval '30 hours', 1)) iv(s, e, even_only)
            WHERE iv.even_only = 0 OR mod(n.id, 2) = 0
            """,
            {"p0": p0, "days": days},
        )
        cur.execute("SELECT setseed(0.42)")
        cur.execute(
            """
            CREATE TEMP TABLE _bench_nodes ON COMMIT DROP AS
            SELECT row_number() OVER (ORDER BY id) - 1 AS k, id, pool_id, mod(id, 2) = 0 AS even
            FROM infra_costs_node
            """
        )
        cur.execute(
            """
            INSERT INTO infra_costs_gpurun (external_id, model_slug, pool_id, node_id, started_at,
                                            finished_at, status, source, created_at)
            SELECT 'bench-' || g.k, 'model-' || (1 + floor(power(random(), 1.5) * %(models)s)),
                   n.pool_id, n.id, g.s, g.s + g.dur, g.status, 'imported', now()
            FROM (
                SELECT k, floor(random() * %(nodes)s)::int AS nk,
                       %(p0)s::timestamptz + floor(random() * %(days)s) * interval '1 day' AS day,
                       random() AS tod, random() AS st,
                       (20 + random() * 280) * interval '1 second' AS dur
                FROM generate_series(1, %(jobs)s) k
            ) r
            JOIN _bench_nodes n ON n.k = r.nk
            CROSS JOIN LATERAL (
                SELECT r.k,
                       CASE WHEN n.even THEN r.day + r.tod * interval '24 hours'
                            ELSE r.day + interval '6 hours' + r.tod * interval '15 hours 55 min'
                       END AS s,
                       r.dur,
                       CASE WHEN r.st < 0.90 THEN 'succeeded' WHEN r.st < 0.97 THEN 'failed'
                            ELSE 'cancelled' END AS status
            ) g
            """,
            {"p0": p0, "days": days, "jobs": jobs, "nodes": NODES, "models": MODELS},
        )
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE infra_costs_gpurun")
        cur.execute("VACUUM ANALYZE infra_costs_uptimeinterval")
    print(f"data: generated {jobs:,} jobs over {days} days in {time.perf_counter() - t0:.1f} s")


# --- Import -----------------------------------------------------------------------------------


def _jobs_csv(jobs: int) -> Path:
    """The generated jobs as an import_jobs CSV file (written once, reused)."""
    import tempfile

    from django.db import connection

    path = Path(tempfile.gettempdir()) / f"gpc_bench_jobs_{jobs}.csv"
    if path.exists():
        return path
    part = path.with_suffix(".part")
    with connection.cursor() as cur, open(part, "wb") as out:
        out.write(b"external_id,model,node,started_at,finished_at,status\n")
        iso = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        with cur.copy(
            "COPY (SELECT r.external_id, r.model_slug, n.name, "
            f"{iso.format('r.started_at')}, {iso.format('r.finished_at')}, r.status "
            "FROM infra_costs_gpurun r JOIN infra_costs_node n ON n.id = r.node_id "
            "WHERE r.external_id LIKE 'bench-%%' ORDER BY r.id) TO STDOUT WITH (FORMAT csv)"
        ) as copy:
            for data in copy:
                out.write(data)
    part.rename(path)
    return path


class _PhaseTimer:
    """Where an import's time goes, from the statements it runs (wall seconds): reading the
    file, the field checks and the COPY into the staging table (everything before the staging
    table's ANALYZE), the set-based checks, the insert into the runs (with its key claim), the
    per-hour aggregates (`hourly.refresh`) and the COMMIT (the deferred FK checks)."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.t0 = 0.0
        self.copied_at: float | None = None
        self.spent = {"checks": 0.0, "insert": 0.0, "aggregates": 0.0, "commit": 0.0}

    def _statement(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - started
            if self.copied_at is None and sql.startswith("ANALYZE _infra_import_jobs"):
                self.copied_at = started - self.t0
            if "_ch_" in sql or "costhour" in sql:
                self.spent["aggregates"] += spent
            elif (
                "INSERT INTO infra_costs_gpurun" in sql or 'INSERT INTO "infra_costs_gpurun' in sql
            ):
                self.spent["insert"] += spent
            elif self.copied_at is not None and "_infra_import_jobs" in sql:
                self.spent["checks"] += spent
            elif self.copied_at is not None and "infra_costs_gpurun" in sql:
                self.spent["insert"] += spent  # a new month: its indexes, its attach

    def __enter__(self):
        self.t0 = time.perf_counter()
        self._wrapping = self.connection.execute_wrapper(self._statement)
        self._wrapping.__enter__()
        commit = self._commit = self.connection._commit

        def timed_commit():
            started = time.perf_counter()
            try:
                return commit()
            finally:
                self.spent["commit"] += time.perf_counter() - started

        self.connection._commit = timed_commit
        return self

    def __exit__(self, *exc):
        self.connection._commit = self._commit
        self._wrapping.__exit__(*exc)

    def line(self, total: float) -> str:
        copy = self.copied_at or 0.0
        rest = total - copy - sum(self.spent.values())
        parts = [("read + field checks + COPY", copy), *self.spent.items()]
        return ", ".join(f"{k} {v:.1f} s" for k, v in parts) + f", other {rest:.1f} s"


def bench_import(jobs: int, days: int, *, existing_months: bool = False) -> bool:
    """Truncate the runs and their ids, import them back from the CSV file (timed, with the
    aggregates of every hour, as `manage.py import_jobs` does), then re-import (nothing added).
    The months of the data are dropped first (the import makes them: history into a database
    that has not seen it) unless `existing_months` (the import inserts into empty months)."""
    from django.db import connection

    from infra_costs import partitions
    from infra_costs.imports import open_csv
    from infra_costs.models import GpuRun
    from infra_costs.services import jobs_import_csv

    path = _jobs_csv(jobs)
    end = date.fromordinal(START.toordinal() + days)
    with connection.cursor() as cur:
        cur.execute("TRUNCATE infra_costs_gpurun, infra_costs_gpurunkey")
        dropped = []
        for part in partitions.gpu_run_partitions():
            if not existing_months and part.month and START.replace(day=1) <= part.month <= end:
                cur.execute(f"ALTER TABLE infra_costs_gpurun DETACH PARTITION {part.name}")
                cur.execute(f"DROP TABLE {part.name}")
                dropped.append(part.name)
        cur.execute("VACUUM ANALYZE infra_costs_gpurun")
        cur.execute("VACUUM ANALYZE infra_costs_gpurunkey")
    print(
        f"import: runs and ids truncated; month partitions dropped: {', '.join(dropped)}"
        if dropped
        else "import: runs and ids truncated; the (empty) month partitions kept"
    )
    times = {}
    for label in ("first", "again"):
        phases = _PhaseTimer(connection)
        t0 = time.perf_counter()
        with phases, open_csv(str(path)) as stream:
            result = jobs_import_csv(stream=stream)
        times[label] = time.perf_counter() - t0
        print(
            f"import ({label}): {result.imported:,} imported, {result.already_present:,} "
            f"already present in {times[label]:.1f} s"
        )
        print("  " + phases.line(times[label]))
    ok = GpuRun.objects.count() == jobs
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE infra_costs_gpurun")
    passed = times["first"] <= IMPORT_TARGET_S * jobs / JOBS
    print(
        f"target import of {jobs:,} jobs <= {IMPORT_TARGET_S * jobs / JOBS:.0f} s: "
        f"{'PASS' if passed else 'MISS'}"
    )
    if not ok:
        print("MISMATCH: the import did not bring back every job")
    return ok and passed


# --- The pandas implementation ---------------------------------------------------------------


def _copy_frame(sql: str, params: dict, columns: list[str], dtypes: dict):
    import pandas as pd
    from django.db import connection

    buf = io.BytesIO()
    with connection.cursor() as cur:
        query = cur.mogrify(sql, params) if hasattr(cur, "mogrify") else sql
        with cur.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
            for block in copy:
                buf.write(block)
    buf.seek(0)
    if not buf.getbuffer().nbytes:
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "object")) for c in columns})
    return pd.read_csv(buf, names=columns, dtype=dtypes, header=None)


def _us(dt: datetime) -> int:
    return round(dt.timestamp()) * 1_000_000 + dt.microsecond


def _explode(s, e, bounds):
    """Pieces of intervals [s, e) cut at sorted `bounds`: (row index, slice index, length µs)."""
    import numpy as np

    i0 = np.searchsorted(bounds, s, side="right") - 1
    i1 = np.searchsorted(bounds, e, side="left") - 1
    i1 = np.maximum(i1, i0)
    n = i1 - i0 + 1
    row = np.repeat(np.arange(len(s)), n)
    offsets = np.repeat(np.cumsum(n) - n, n)
    idx = i0[row] + (np.arange(len(row)) - offsets)
    lo = np.maximum(s[row], bounds[idx])
    hi = np.minimum(e[row], bounds[idx + 1])
    length = hi - lo
    keep = length > 0
    return row[keep], idx[keep], length[keep]


def _islands(df, key: str):
    """Merge overlapping intervals per `key` (columns s, e) into disjoint islands."""
    df = df.sort_values([key, "s"], kind="stable")
    prev_end = df.groupby(key, sort=False)["e"].cummax().groupby(df[key], sort=False).shift(1)
    new = prev_end.isna() | (df["s"] > prev_end)
    grp = new.cumsum()
    out = df.groupby(grp.values, sort=False).agg(
        **{
            key: (key, "first"),
            "pool_id": ("pool_id", "first"),
            "s": ("s", "min"),
            "e": ("e", "max"),
        }
    )
    return out.reset_index(drop=True)


def pandas_report(period) -> dict:
    import numpy as np
    import pandas as pd

    t_load = time.perf_counter()
    p0, p1 = _us(period.start_at), _us(period.end_at)
    params = {"p0": period.start_at, "p1": period.end_at}
    epoch = "(extract(epoch FROM {c}) * 1000000)::bigint"
    rates = _copy_frame(
        f"SELECT pool_id, {epoch.format(c='effective_from')}, hourly_rate_usd "
        "FROM infra_costs_poolrate ORDER BY pool_id, effective_from",
        {},
        ["pool_id", "f", "rate"],
        {"pool_id": "int64", "f": "int64", "rate": "float64"},
    )
    up = _copy_frame(
        f"SELECT node_id, pool_id, {epoch.format(c='started_at')}, {epoch.format(c='ended_at')} "
        "FROM infra_costs_uptimeinterval WHERE started_at < %(p1)s AND ended_at > %(p0)s",
        params,
        ["node_id", "pool_id", "s", "e"],
        {"node_id": "int64", "pool_id": "int64", "s": "int64", "e": "int64"},
    )
    jobs = _copy_frame(
        f"SELECT model_slug, pool_id, node_id, status, {epoch.format(c='started_at')}, "
        f"{epoch.format(c='finished_at')} FROM infra_costs_gpurun "
        "WHERE finished_at >= %(p0)s AND finished_at < %(p1)s "
        "AND status IN ('succeeded', 'failed', 'cancelled')",
        params,
        ["model", "pool_id", "node_id", "status", "s", "e"],
        {
            "model": "category",
            "pool_id": "int64",
            "node_id": "int64",
            "status": "category",
            "s": "int64",
            "e": "int64",
        },
    )
    load_s = time.perf_counter() - t_load
    t_compute = time.perf_counter()

    # Windows (independently of infra_costs.periods: pandas' own calendar) and slices.
    freq = "D" if period.window == "day" else "h"
    local = pd.date_range(
        pd.Timestamp(period.start).tz_localize(period.timezone),
        pd.Timestamp(period.end).tz_localize(period.timezone),
        freq=freq,
    )
    wb = np.array([ts.tz_convert("UTC").value // 1000 for ts in local], dtype=np.int64)
    changes = rates["f"].to_numpy()
    slices = np.union1d(wb, changes[(changes > p0) & (changes < p1)])
    slice_win = np.searchsorted(wb, slices[:-1], side="right") - 1
    pools = sorted(set(rates["pool_id"]) | set(up["pool_id"]) | set(jobs["pool_id"]))
    pool_pos = {p: k for k, p in enumerate(pools)}
    rate_tab = np.zeros((len(pools), len(slices) - 1))
    for pool_id, grp in rates.groupby("pool_id"):
        k = np.searchsorted(grp["f"].to_numpy(), slices[:-1], side="right") - 1
        vals = grp["rate"].to_numpy()
        rate_tab[pool_pos[pool_id]] = np.where(k >= 0, vals[np.maximum(k, 0)], 0.0)

    # Uptime: clip, merge per node, cost per (pool, window).
    up["s"] = up["s"].clip(lower=p0)
    up["e"] = up["e"].clip(upper=p1)
    ui = _islands(up, "node_id")
    row, idx, length = _explode(ui["s"].to_numpy(), ui["e"].to_numpy(), slices)
    pos_map = np.zeros(max(pools) + 1 if pools else 1, dtype=np.int64)
    for p, k in pool_pos.items():
        pos_map[p] = k
    upool = ui["pool_id"].to_numpy()[row]
    cost_piece = length / 3.6e9 * rate_tab[pos_map[upool], idx]
    cost_pw = (
        pd.DataFrame({"pool_id": upool, "win": slice_win[idx], "cost": cost_piece, "up": length})
        .groupby(["pool_id", "win"], as_index=False)
        .sum()
    )

    # Jobs: clip to the period start; weights and active cost per (model, pool, window).
    jobs["s"] = jobs["s"].clip(lower=p0)
    counts = jobs.groupby(["model", "status"], observed=True).size()
    ok = jobs[(jobs["status"] == "succeeded") & (jobs["e"] > jobs["s"])]
    row, idx, length = _explode(ok["s"].to_numpy(), ok["e"].to_numpy(), slices)
    jpool = ok["pool_id"].to_numpy()[row]
    jpp = pos_map[jpool]
    w = pd.DataFrame(
        {
            "model": ok["model"].to_numpy()[row],
            "pool_id": jpool,
            "win": slice_win[idx],
            "w": length,
            "active": length / 3.6e9 * rate_tab[jpp, idx],
        }
    )
    w_mpw = w.groupby(["model", "pool_id", "win"], as_index=False, observed=True).sum()
    w_pw = w_mpw.groupby(["pool_id", "win"], as_index=False)["w"].sum().rename(columns={"w": "tw"})
    m = w_mpw.merge(w_pw, on=["pool_id", "win"]).merge(
        cost_pw[["pool_id", "win", "cost"]], on=["pool_id", "win"], how="left"
    )
    m["cost"] = m["cost"].fillna(0.0)
    m["alloc"] = m["cost"] * m["w"] / m["tw"]
    mp = m.groupby(["model", "pool_id"], as_index=False, observed=True)[
        ["alloc", "w", "active"]
    ].sum()
    cw = cost_pw.merge(w_pw, on=["pool_id", "win"], how="left")
    cw["weighted"] = cw["tw"].fillna(0) > 0

    # Busy: job islands per node ∩ uptime islands, via the uptime coverage function
    # C(t) = uptime seconds of the node before t (prefix sums; nodes laid end to end).
    busy_jobs = jobs[jobs["e"] > jobs["s"]][["node_id", "pool_id", "s", "e"]]
    ji = _islands(busy_jobs, "node_id")
    span = p1 - p0 + 1
    nodes = np.union1d(ui["node_id"].to_numpy(), ji["node_id"].to_numpy())
    node_pos = {n: k for k, n in enumerate(nodes)}
    ui_sorted = ui.assign(k=ui["node_id"].map(node_pos)).sort_values(["k", "s"])
    us = (ui_sorted["s"] - p0 + ui_sorted["k"] * span).to_numpy()
    ue = (ui_sorted["e"] - p0 + ui_sorted["k"] * span).to_numpy()
    cum = np.concatenate([[0], np.cumsum(ue - us)])

    def coverage(t):
        k = np.searchsorted(us, t, side="right") - 1
        inside = np.where(
            k >= 0, np.clip(t - us[np.maximum(k, 0)], 0, (ue - us)[np.maximum(k, 0)]), 0
        )
        return np.where(k >= 0, cum[np.maximum(k, 0)], 0) + inside

    row, idx, length = _explode(ji["s"].to_numpy(), ji["e"].to_numpy(), slices)
    jk = ji["node_id"].map(node_pos).to_numpy()[row]
    lo = np.maximum(ji["s"].to_numpy()[row], slices[idx]) - p0 + jk * span
    hi = np.minimum(ji["e"].to_numpy()[row], slices[idx + 1]) - p0 + jk * span
    inside = coverage(hi) - coverage(lo) if len(us) else np.zeros(len(lo))
    busy = (
        pd.DataFrame({"pool_id": ji["pool_id"].to_numpy()[row], "busy": inside})
        .groupby("pool_id")["busy"]
        .sum()
    )

    # Assembly.
    out_pools, unattributed, fully = {}, 0.0, {}
    for pool_id in pools:
        c = cw[cw["pool_id"] == pool_id]
        on = mp[mp["pool_id"] == pool_id]
        cost = float(c["cost"].sum())
        allocated = float(c.loc[c["weighted"], "cost"].sum())
        unalloc = cost - allocated
        uptime = float(c["up"].sum()) / 1e6
        b = float(busy.get(pool_id, 0.0)) / 1e6
        if not len(c) and not len(on) and not b:
            continue
        out_pools[pool_id] = {
            "uptime_hours": uptime / 3600,
            "busy_hours": b / 3600,
            "idle_hours": (uptime - b) / 3600,
            "cost_usd": cost,
            "allocated_usd": allocated,
            "unallocated_usd": unalloc,
            "_uptime": uptime,
            "_busy": b,
        }
        ta, tw = on["alloc"].sum(), on["w"].sum()
        for r in on.itertuples():
            share = unalloc * r.alloc / ta if ta > 0 else (unalloc * r.w / tw if tw > 0 else 0)
            fully[r.model] = fully.get(r.model, 0.0) + r.alloc + share
        if ta <= 0 and tw <= 0:
            unattributed += unalloc
    per_model = mp.groupby("model", observed=True)[["alloc", "w", "active"]].sum()
    models = {}
    for model in sorted({m for m, _ in counts.index}):
        gens = int(counts.get((model, "succeeded"), 0))
        models[model] = {
            "generations": gens,
            "failed": int(counts.get((model, "failed"), 0)),
            "gpu_hours": float(per_model["w"].get(model, 0.0)) / 3.6e9,
            "active_cost_usd": float(per_model["active"].get(model, 0.0)),
            "allocated_cost_usd": float(per_model["alloc"].get(model, 0.0)),
            "fully_loaded_cost_usd": fully.get(model, 0.0),
            "cost_per_generation_usd": fully.get(model, 0.0) / gens if gens else None,
        }
    infra = sum(p["cost_usd"] for p in out_pools.values())
    gens = sum(m["generations"] for m in models.values())
    tot_up = sum(p["_uptime"] for p in out_pools.values())
    tot_busy = sum(p["_busy"] for p in out_pools.values())
    compute_s = time.perf_counter() - t_compute
    return {
        "pools": out_pools,
        "models": models,
        "totals": {
            "infra_cost_usd": infra,
            "generations": gens,
            "unattributed_usd": unattributed,
            "weighted_avg_cost_per_generation_usd": sum(fully.values()) / gens if gens else None,
            "idle_fraction": (tot_up - tot_busy) / tot_up if tot_up else None,
        },
        "_load_s": load_s,
        "_compute_s": compute_s,
    }


# --- Comparison --------------------------------------------------------------------------------


def compare(sql: dict, pdr: dict, pool_slugs: dict[int, str]) -> list[str]:
    diffs = []

    def check(where: str, a, b) -> None:
        if a is None or b is None:
            if a is not b and not (a is None and b is None):
                diffs.append(f"{where}: sql={a} pandas={b}")
            return
        if abs(float(Decimal(str(a))) - float(b)) > TOLERANCE * max(1.0, 1e-9 * abs(float(b))):
            diffs.append(f"{where}: sql={a} pandas={b!r}")

    sql_pools = {p["pool"]: p for p in sql["pools"]}
    for pool_id, p in pdr["pools"].items():
        s = sql_pools.get(pool_slugs[pool_id])
        if s is None:
            diffs.append(f"pool {pool_slugs[pool_id]} missing from the SQL report")
            continue
        for key in (
            "uptime_hours",
            "busy_hours",
            "idle_hours",
            "cost_usd",
            "allocated_usd",
            "unallocated_usd",
        ):
            check(f"pool {s['pool']} {key}", s[key], p[key])
    sql_models = {m["model"]: m for m in sql["models"]}
    if set(sql_models) != set(pdr["models"]):
        diffs.append(f"models differ: {sorted(sql_models)} vs {sorted(pdr['models'])}")
    for model, m in pdr["models"].items():
        s = sql_models.get(model)
        if s is None:
            continue
        for key, value in m.items():
            check(f"model {model} {key}", s[key], value)
    for key, value in pdr["totals"].items():
        check(f"totals {key}", sql["totals"][key], value)
    return diffs


# --- Main ----------------------------------------------------------------------------------------


def _explain(period) -> None:
    """EXPLAIN ANALYZE of each statement of the SQL engine (by wrapping the cursor)."""
    from django.db import connection

    from infra_costs.allocation.sql import raw_aggregates
    from infra_costs.allocation.windows import gather_inputs

    original = connection.cursor

    class Explaining:
        def __init__(self, cur):
            self.cur = cur

        def execute(self, sql, params=None):
            head = sql.strip().split()[0].upper()
            if head in ("SELECT", "WITH") or sql.strip().upper().startswith(
                "CREATE TEMP TABLE _UC"
            ):
                t0 = time.perf_counter()
                self.cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = "\n".join(r[0][:160] for r in self.cur.fetchall())
                print(f"--- {time.perf_counter() - t0:.3f} s ---\n{sql.strip()[:200]}…\n{plan}\n")
                if head == "CREATE":
                    return None  # EXPLAIN ANALYZE of CREATE TABLE AS created it
            return self.cur.execute(sql, params)

        def __getattr__(self, name):
            return getattr(self.cur, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.cur.close()

    connection.cursor = lambda: Explaining(original())
    try:
        raw_aggregates(gather_inputs(period))
    finally:
        connection.cursor = original


def main(argv=None) -> int:
    args = parse_args(argv)
    url = args.database_url or (
        DEFAULT_URL if "DATABASE_URL" not in __import__("os").environ else _django.database_url()
    )
    if _django.ensure_database(url):
        print(f"created database {_django.database_name(url)}")
    _django.setup(url)
    import pandas as pd

    from infra_costs.allocation import unit_cost_report
    from infra_costs.models import NodePool
    from infra_costs.periods import make_period

    generate(args.days, args.jobs, args.regenerate)
    from infra_costs.models import CostHourDirty
    from infra_costs.services import cost_aggregates_refresh

    if CostHourDirty.objects.exists():  # freshly generated: build the per-hour aggregates
        t0 = time.perf_counter()
        hours = cost_aggregates_refresh()
        print(f"aggregates: {hours:,} hours built in {time.perf_counter() - t0:.1f} s")
    import_ok = (
        bench_import(args.jobs, args.days, existing_months=args.import_existing)
        if args.import_jobs
        else True
    )
    end = date.fromordinal(START.toordinal() + args.days)
    period = make_period(START, end, window=args.window)
    pool_slugs = dict(NodePool.objects.values_list("id", "slug"))
    if args.explain:
        _explain(period)

    sql_times, pandas_times, loads, computes = [], [], [], []
    sql_report = pandas_result = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        sql_report = unit_cost_report(START, end, window=args.window)
        sql_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pandas_result = pandas_report(period)
        pandas_times.append(time.perf_counter() - t0)
        loads.append(pandas_result["_load_s"])
        computes.append(pandas_result["_compute_s"])
    diffs = compare(sql_report, pandas_result, pool_slugs)

    sql_s, pandas_s = statistics.median(sql_times), statistics.median(pandas_times)
    ratio = pandas_s / sql_s
    totals = sql_report["totals"]
    print()
    print(
        f"unit_costs bench: {args.days} days, {len(pool_slugs)} pools, {NODES} nodes, "
        f"{args.jobs:,} jobs, {args.window} windows ({sql_report['period']['windows']}), "
        f"pandas {pd.__version__}, median of {args.repeat}"
    )
    print(f"{'path':<28}{'median s':>10}{'min s':>10}{'max s':>10}")
    print(
        f"{'sql (unit_cost_report)':<28}{sql_s:>10.2f}{min(sql_times):>10.2f}"
        f"{max(sql_times):>10.2f}"
    )
    print(
        f"{'pandas (load + compute)':<28}{pandas_s:>10.2f}{min(pandas_times):>10.2f}"
        f"{max(pandas_times):>10.2f}"
    )
    print(f"{'  pandas load (COPY out)':<28}{statistics.median(loads):>10.2f}")
    print(f"{'  pandas compute':<28}{statistics.median(computes):>10.2f}")
    print(
        f"ratio pandas / sql: {ratio:.2f}x   "
        f"(compute only: {statistics.median(computes) / sql_s:.2f}x)"
    )
    print(
        f"report: infra ${totals['infra_cost_usd']}, {totals['generations']:,} generations, "
        f"idle fraction {totals['idle_fraction']}, weighted avg "
        f"${totals['weighted_avg_cost_per_generation_usd']}/generation, "
        f"{len(sql_report['warnings'])} warnings"
    )
    ok = True
    if diffs:
        ok = False
        print(f"MISMATCH: {len(diffs)} numbers differ by more than {TOLERANCE}:")
        for d in diffs[:30]:
            print("  " + d)
    else:
        print(f"numbers: SQL and pandas agree on every figure (to {TOLERANCE})")
    for name, passed in (
        (f"SQL < {TARGET_S:.0f} s", sql_s < TARGET_S),
        (
            f"SQL >= {TARGET_RATIO[args.window]:.0f}x faster than pandas ({args.window})",
            ratio >= TARGET_RATIO[args.window],
        ),
    ):
        print(f"target {name}: {'PASS' if passed else 'MISS'}")
        ok = ok and passed
    return 0 if ok and import_ok else 1


if __name__ == "__main__":
    sys.exit(main())
