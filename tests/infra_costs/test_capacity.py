"""Capacity recommendation (spec §3 "predictive scaling", §5 `recommend_capacity`):
hand-computed demand → nodes → set-points, set-point round-trips through `pool_sizes`, the
FIFO replay, costs, and the command's JSON."""

from __future__ import annotations

import json
import random
import time as clock
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from config.errors import NotFound, ValidationError
from infra_costs.capacity import as_dict, recommend_capacity
from infra_costs.capacity.data import run_intervals
from infra_costs.capacity.demand import percentile_of, window_hours
from infra_costs.capacity.fifo import replay, wait_stats
from infra_costs.capacity.setpoints import as_models, compress, days_expr, hours_expr
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, ScheduleSetPoint, UptimeInterval
from infra_costs.schedule import pool_sizes

MON = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; windows below end on Mondays
END_1W = date(2026, 1, 12)
H = timedelta(hours=1)
S = 1_000_000  # µs per second
PCT = "percentile"  # §3's formula alone (the SLA fit is tested in test_capacity_fit.py)


# --- Helpers -------------------------------------------------------------------------------------


class Pool:
    def __init__(self, slug="gpu", *, rate="2.00", sla=60, min_nodes=1, tz="UTC"):
        self.pool = NodePool.objects.create(
            slug=slug, gpu_type="X", sla_queue_wait_s=sla, min_nodes=min_nodes, timezone=tz
        )
        PoolRate.objects.create(
            pool=self.pool,
            hourly_rate_usd=Decimal(rate),
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )
        self.nodes: dict[str, Node] = {}
        self.rows: list[GpuRun] = []

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            self.nodes[name] = Node.objects.create(name=f"{self.pool.slug}-{name}", pool=self.pool)
        return self.nodes[name]

    def job(self, node: str, start: datetime, end: datetime | None, status="succeeded"):
        self.rows.append(
            GpuRun(
                external_id=f"{self.pool.slug}-{len(self.rows)}",
                model_slug="m",
                pool=self.pool,
                node=self.node(node),
                started_at=start,
                finished_at=end,
                status="running" if end is None else status,
                source="imported",
            )
        )

    def save(self):
        GpuRun.objects.bulk_create(self.rows)
        self.rows = []
        return self

    def set_point(self, cron: str, count: int, tz: str = "UTC"):
        return ScheduleSetPoint.objects.create(
            pool=self.pool, cron=cron, node_count=count, timezone=tz
        )


def constant_load(p: Pool, start: datetime, weeks: int, extra_minutes: int = 30):
    """1 node busy all along (one long job) + a job of `extra_minutes` on a second node at the
    start of every hour: (60 + extra) / 60 busy nodes every hour."""
    end = start + timedelta(weeks=weeks)
    p.job("a", start, end)
    t = start
    while t < end:
        p.job("b", t, t + timedelta(minutes=extra_minutes))
        t += H
    return p.save()


def slot(day: int, hour: int) -> int:
    return day * 24 + hour


def expand_per_slot(set_points, week_start: datetime, tz_name: str) -> list[int]:
    """The size at the start of each local hour of the week beginning at local Monday
    00:00 `week_start`, from set-points expanded with `pool_sizes`."""
    tz = ZoneInfo(tz_name)
    start = week_start.astimezone(UTC)
    end = start + timedelta(weeks=1)
    steps = pool_sizes(set_points, start, end, tz_name)
    out = []
    for s in range(168):
        local = datetime.combine(
            (week_start + timedelta(days=s // 24)).date(),
            datetime.min.time().replace(hour=s % 24),
            tzinfo=tz,
        )
        t = local.astimezone(UTC)
        out.append([n for at, n in steps if at <= t][-1])
    return out


# --- Demand → nodes ------------------------------------------------------------------------------


def test_percentile_is_linear_interpolation_between_ranks():
    assert percentile_of([1, 1, 1, 5], 90) == Fraction(19, 5)  # 1 + 0.7 × 4
    assert percentile_of([1, 1, 1, 5], 50) == 1
    assert percentile_of([3], 90) == 3
    assert percentile_of([4, 1, 3, 2], 100) == 4
    assert percentile_of([4, 1, 3, 2], 0) == 1
    assert percentile_of([], 90) is None
    assert percentile_of([0, 10, None], 50) == 10
    assert percentile_of([0, 10, None], 95) is None  # touches a job that never starts


@pytest.mark.django_db
def test_constant_load_of_one_and_a_half_nodes_gives_two_nodes_everywhere():
    p = constant_load(Pool(), MON, weeks=2)
    rec = recommend_capacity("gpu", fit=PCT, weeks=2, end=date(2026, 1, 19))
    assert set(rec.demand) == {Fraction(3, 2)}
    assert rec.nodes == [2] * 168  # ceil(1.5 × 1.2) = 2
    assert as_dict(rec)["set_points"] == [{"cron": "0 0 * * *", "nodes": 2, "timezone": "UTC"}]
    assert rec.jobs == 1 + 2 * 168 and rec.replayed == rec.jobs
    assert p.pool.min_nodes == 1


@pytest.mark.django_db
def test_weekday_nine_to_five_peak():
    p = Pool()
    p.job("base", MON, MON + timedelta(weeks=1))
    for day in range(5):
        nine = MON + timedelta(days=day, hours=9)
        for n in ("x", "y", "z"):
            p.job(n, nine, nine + 8 * H)
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W)
    for s in range(168):
        peak = s // 24 < 5 and 9 <= s % 24 < 17
        assert rec.demand[s] == (4 if peak else 1), s
        assert rec.nodes[s] == (5 if peak else 2), s  # ceil(4.8), ceil(1.2)
    assert as_dict(rec)["set_points"] == [
        {"cron": "0 9 * * 1-5", "nodes": 5, "timezone": "UTC"},
        {"cron": "0 17 * * 1-5", "nodes": 2, "timezone": "UTC"},
    ]


@pytest.mark.django_db
def test_percentile_across_weeks_is_p90_not_the_mean():
    p = Pool()
    start = MON - timedelta(weeks=3)  # 4 weeks ending 2026-01-12
    p.job("base", start, start + timedelta(weeks=4))
    wed10 = MON + timedelta(days=2, hours=10)  # the 4th week only
    for n in ("x", "y", "z", "w"):
        p.job(n, wed10, wed10 + H)
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, end=END_1W)  # weeks=4 by default
    s = slot(2, 10)
    assert rec.demand[s] == Fraction(19, 5)  # p90 of [1, 1, 1, 5]; the mean would be 2
    assert rec.nodes[s] == 5  # ceil(3.8 × 1.2 = 4.56); the mean would give ceil(2.4) = 3
    assert all(n == 2 for i, n in enumerate(rec.nodes) if i != s)
    median = recommend_capacity("gpu", fit=PCT, end=END_1W, percentile="50")
    assert median.nodes == [2] * 168
    top = recommend_capacity("gpu", fit=PCT, end=END_1W, percentile="100")
    assert top.nodes[s] == 6  # ceil(5 × 1.2)
    assert as_dict(rec)["set_points"] == [
        {"cron": "0 10 * * 3", "nodes": 5, "timezone": "UTC"},
        {"cron": "0 11 * * 3", "nodes": 2, "timezone": "UTC"},
    ]


@pytest.mark.django_db
def test_min_nodes_floor():
    p = Pool(min_nodes=3)
    wed10 = MON + timedelta(days=2, hours=10)
    p.job("a", wed10, wed10 + timedelta(minutes=6))  # 0.1 busy node in one hour
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W)
    assert rec.nodes == [3] * 168
    p.pool.min_nodes = 0
    p.pool.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W)
    assert rec.nodes[slot(2, 10)] == 1  # ceil(0.12)
    assert sum(rec.nodes) == 1  # 0 nodes wherever there is no demand
    assert as_dict(rec)["set_points"] == [
        {"cron": "0 10 * * 3", "nodes": 1, "timezone": "UTC"},
        {"cron": "0 11 * * 3", "nodes": 0, "timezone": "UTC"},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("buffer", "nodes"), [("0", 2), ("0.2", 3), ("0.5", 3), ("0.51", 4), ("1", 4)]
)
def test_buffer_option(buffer, nodes):
    constant_load(Pool(), MON, weeks=1, extra_minutes=60)  # exactly 2 busy nodes
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W, buffer=buffer)
    assert rec.nodes == [nodes] * 168


@pytest.mark.django_db
def test_failed_cancelled_and_running_jobs_are_busy():
    p = Pool(min_nodes=0)
    t = MON + timedelta(days=1, hours=3)
    p.job("a", t, t + H, status="failed")
    p.job("b", t, t + H, status="cancelled")
    p.job("c", MON + timedelta(days=6, hours=22), None)  # still running: busy until the end
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W, buffer="0")
    assert rec.demand[slot(1, 3)] == 2
    assert rec.demand[slot(6, 22)] == rec.demand[slot(6, 23)] == 1
    assert sum(rec.nodes) == 2 + 1 + 1


@pytest.mark.django_db
def test_jobs_crossing_the_window_count_only_inside_it():
    p = Pool(min_nodes=0)
    p.job("a", MON - 2 * H, MON + timedelta(minutes=30))  # before the window: 30 min inside
    p.job("b", MON + 3 * H, MON + 3 * H + timedelta(minutes=15))
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W, buffer="0")
    assert rec.demand[0] == Fraction(1, 2)
    assert rec.demand[3] == Fraction(1, 4)
    assert rec.jobs == 2 and rec.replayed == 1  # the replay takes jobs that started inside


@pytest.mark.django_db
def test_hours_of_week_are_local_to_the_pool_time_zone():
    tz = ZoneInfo("America/New_York")  # UTC−5 in January
    p = Pool(tz="America/New_York", min_nodes=0)
    for day in range(5):
        nine = datetime(2026, 1, 5 + day, 9, tzinfo=tz)
        p.job("x", nine, nine + 8 * H)
    p.save()
    # The window [2026-01-05, 2026-01-12) UTC is Sunday 19:00 → Sunday 19:00 in New York.
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W, buffer="0")
    for s in range(168):
        assert rec.nodes[s] == (1 if s // 24 < 5 and 9 <= s % 24 < 17 else 0), s
    assert as_dict(rec)["set_points"] == [
        {"cron": "0 9 * * 1-5", "nodes": 1, "timezone": "America/New_York"},
        {"cron": "0 17 * * 1-5", "nodes": 0, "timezone": "America/New_York"},
    ]
    # The window ends at a UTC midnight; expanding the set-points gives back every slot.
    assert (
        expand_per_slot(
            as_models(rec.set_points), datetime(2026, 1, 5, tzinfo=tz), "America/New_York"
        )
        == rec.nodes
    )


def test_local_hours_across_dst_changes():
    ny = ZoneInfo("America/New_York")
    # Autumn: 2026-11-01 01:00–02:00 happens twice → one observation of 2 h for Sun 01:00.
    start = datetime(2026, 10, 26, tzinfo=UTC)
    hours = window_hours(start, start + timedelta(weeks=1), ny)
    assert len(hours.bounds) - 1 == 168
    assert len(hours.slot_of_obs) == 167
    sun1 = [k for k, s in enumerate(hours.slot_of_obs) if s == slot(6, 1)]
    assert [hours.length_of_obs[k] for k in sun1] == [7200 * S]
    # Spring: 2026-03-08 02:00–03:00 does not exist → Sun 02:00 has no observation.
    start = datetime(2026, 3, 2, tzinfo=UTC)
    hours = window_hours(start, start + timedelta(weeks=1), ny)
    assert slot(6, 2) not in hours.slot_of_obs
    # The window (Sun 19:00 EST → Sun 20:00 EDT) holds Sun 19:00 of two local dates.
    assert len(hours.slot_of_obs) == 168 and hours.slot_of_obs.count(slot(6, 19)) == 2
    # A half-hour zone: local hours are cut at :30 UTC; the window's ends are partial hours.
    hours = window_hours(start, start + timedelta(days=1), ZoneInfo("Asia/Kolkata"))
    assert hours.bounds[1] == 30 * 60 * S and len(hours.slot_of_obs) == 25


@pytest.mark.django_db
def test_a_window_across_a_dst_change():
    tz = ZoneInfo("Europe/Berlin")  # 2026-03-29 02:00 → 03:00
    p = Pool(tz="Europe/Berlin", min_nodes=0)
    for day in range(14):
        nine = datetime(2026, 3, 23 + day, 9, tzinfo=tz) if day < 9 else None
        nine = nine or datetime(2026, 4, day - 8, 9, tzinfo=tz)
        p.job("x", nine, nine + 8 * H)
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=2, end=date(2026, 4, 6), buffer="0")
    # Every day 09:00–17:00 local, before and after the change.
    assert rec.nodes == [1 if 9 <= s % 24 < 17 else 0 for s in range(168)]
    assert as_dict(rec)["set_points"] == [
        {"cron": "0 9 * * *", "nodes": 1, "timezone": "Europe/Berlin"},
        {"cron": "0 17 * * *", "nodes": 0, "timezone": "Europe/Berlin"},
    ]
    assert rec.replay["recommended"].share_over_sla == 0


# --- Set-point compression -----------------------------------------------------------------------


def test_compress_examples():
    nodes = [2] * 168
    for d in range(5):
        for h in range(8, 20):
            nodes[slot(d, h)] = 4
    crons = [(sp.cron, sp.nodes) for sp in compress(nodes, "UTC")]
    assert crons == [("0 8 * * 1-5", 4), ("0 20 * * 1-5", 2)]
    weekend = [1] * 168
    for d in (5, 6):
        for h in range(10, 14):
            weekend[slot(d, h)] = 3
    assert [(sp.cron, sp.nodes) for sp in compress(weekend, "UTC")] == [
        ("0 10 * * 6,0", 3),
        ("0 14 * * *", 1),  # a firing where the count already holds is harmless: fewer parts
    ]
    assert days_expr({0, 1, 2, 4}) == "1-3,5"
    assert days_expr({6}) == "0"
    assert days_expr(set(range(7))) == "*"
    assert hours_expr({1, 2, 3, 7}) == "1-3,7"


@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"])
@pytest.mark.parametrize("seed", range(12))
def test_compression_round_trips_through_pool_sizes(tz_name, seed):
    rng = random.Random(seed)
    if seed % 3 == 0:  # a daily pattern with weekday/weekend differences
        day = [rng.randint(0, 4) for _ in range(24)]
        nodes = [day[h] + (1 if d < 5 and 9 <= h < 18 else 0) for d in range(7) for h in range(24)]
    elif seed % 3 == 1:  # blocky
        nodes, n = [], rng.randint(1, 5)
        for _ in range(168):
            if rng.random() < 0.1:
                n = rng.randint(0, 6)
            nodes.append(n)
    else:  # noise
        nodes = [rng.randint(0, 3) for _ in range(168)]
    set_points = compress(nodes, tz_name)
    week = datetime(2026, 1, 12, tzinfo=ZoneInfo(tz_name))  # a Monday, no DST change near
    assert expand_per_slot(as_models(set_points), week, tz_name) == nodes
    # Never more set-points than changes of the weekly sequence (one at minimum).
    changes = sum(1 for s in range(168) if nodes[s] != nodes[s - 1])
    assert 1 <= len(set_points) <= max(1, changes)


@pytest.mark.django_db
def test_recommended_set_points_expand_back_to_the_recommendation():
    p = Pool()
    rng = random.Random(7)
    start = MON - timedelta(weeks=1)
    for k in range(600):
        s = start + timedelta(minutes=rng.randrange(0, 2 * 7 * 24 * 60))
        p.job(f"n{k % 9}", s, s + timedelta(minutes=rng.randint(1, 180)))
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=2, end=END_1W)
    assert expand_per_slot(as_models(rec.set_points), MON, "UTC") == rec.nodes


# --- Replay --------------------------------------------------------------------------------------


def test_replay_with_enough_capacity_nobody_waits():
    jobs = [(0, 100 * S), (10 * S, 50 * S), (20 * S, 5 * S)]
    assert replay(jobs, [(0, 3)]) == [0, 0, 0]


def test_replay_one_node_two_overlapping_jobs_the_second_waits_the_overlap():
    # Job 1 runs [0, 100 s); job 2 arrives at 60 s: it waits the 40 s overlap.
    assert replay([(0, 100 * S), (60 * S, 50 * S)], [(0, 1)]) == [0, 40 * S]
    # A third arriving at 70 s waits for job 2 (FIFO): it starts at 150 s.
    assert replay([(0, 100 * S), (60 * S, 50 * S), (70 * S, 1 * S)], [(0, 1)])[2] == 80 * S


def test_replay_follows_capacity_changes():
    # Capacity 0 until 30 s, then 1: the first job waits 30 s.
    assert replay([(0, 10 * S)], [(0, 0), (30 * S, 1)]) == [30 * S]
    # 2 nodes, dropping to 1 at 5 s: both running jobs go on to their end. The third (at
    # 10 s) must wait until fewer nodes are busy than the capacity: at 20 s job 1 ends but job
    # 2 still holds the only node; at 40 s it ends → the third waits 30 s.
    jobs = [(0, 20 * S), (0, 40 * S), (10 * S, 1 * S)]
    assert replay(jobs, [(0, 2), (5 * S, 1)]) == [0, 0, 30 * S]
    # Capacity rises again at 25 s: the third starts then.
    assert replay(jobs, [(0, 2), (5 * S, 1), (25 * S, 2)]) == [0, 0, 15 * S]
    # No capacity ever again: never starts (None), and FIFO blocks the rest.
    assert replay([(0, 1 * S), (5 * S, 1 * S)], [(0, 1), (2 * S, 0)]) == [0, None]


def test_wait_stats_share_over_sla():
    waits = [0, 30 * S, 60 * S, 90 * S, 200 * S]
    stats = wait_stats(waits, sla_s=60)
    assert stats.share_over_sla == Decimal("0.4")  # 90 s and 200 s wait longer than 60 s
    assert stats.p50_wait_s == 60
    assert stats.p95_wait_s == Decimal("178")  # 90 + 0.8 × 110
    assert wait_stats([0, None], 60).share_over_sla == Decimal("0.5")


def test_replay_of_100k_jobs_is_fast():
    rng = random.Random(1)
    t, jobs = 0, []
    for _ in range(100_000):
        t += int(rng.expovariate(1 / 20) * S)
        jobs.append((t, int(rng.lognormvariate(3, 0.5) * S)))
    steps = [(h * 3600 * S, 2 + (h % 24 >= 8) * 3) for h in range(0, t // (3600 * S) + 2)]
    began = clock.perf_counter()
    waits = replay(jobs, steps)
    assert clock.perf_counter() - began < 5
    assert len(waits) == 100_000 and all(w is not None and w >= 0 for w in waits)


# --- Costs and the whole recommendation ----------------------------------------------------------


@pytest.mark.django_db
def test_costs_per_week_and_savings():
    p = Pool(rate="2.00")
    p.set_point("0 0 * * *", 3)
    constant_load(p, MON, weeks=1)
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W)
    out = as_dict(rec)
    assert out["current_cost_usd"] == "1008.000000"  # 3 nodes × 168 h × $2
    assert out["recommended_cost_usd"] == "672.000000"  # 2 nodes × 168 h × $2
    assert out["savings_fraction"] == "0.333333"
    assert rec.current_basis == "schedule"
    # Under-provisioned now: the recommendation costs more (negative savings).
    ScheduleSetPoint.objects.filter(pool=p.pool).update(node_count=1)
    out = as_dict(recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W))
    assert out["current_cost_usd"] == "336.000000"
    assert out["savings_fraction"] == "-1.000000"


@pytest.mark.django_db
def test_cost_uses_the_rate_in_force_now():
    p = Pool(rate="2.00")
    PoolRate.objects.create(
        pool=p.pool,
        hourly_rate_usd=Decimal("3.00"),
        effective_from=datetime(2026, 1, 8, tzinfo=UTC),
    )
    PoolRate.objects.create(  # a future price change does not count yet
        pool=p.pool,
        hourly_rate_usd=Decimal("9.00"),
        effective_from=datetime(2030, 1, 1, tzinfo=UTC),
    )
    p.set_point("0 0 * * *", 1)
    constant_load(p, MON, weeks=1)
    rec = recommend_capacity(
        "gpu", fit=PCT, weeks=1, end=END_1W, now=datetime(2026, 2, 1, tzinfo=UTC)
    )
    assert rec.rate == Decimal("3.00")
    assert as_dict(rec)["current_cost_usd"] == "504.000000"  # 1 × 168 h × $3


@pytest.mark.django_db
def test_without_a_schedule_the_current_capacity_is_the_measured_uptime():
    p = Pool(rate="1.00", sla=60)
    node = p.node("a")
    UptimeInterval.objects.create(
        node=node, pool=p.pool, started_at=MON, ended_at=MON + timedelta(days=7)
    )
    UptimeInterval.objects.create(  # overlaps the first: counts once
        node=node, pool=p.pool, started_at=MON, ended_at=MON + timedelta(days=1)
    )
    p.job("a", MON + H, MON + 2 * H)
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W)
    assert rec.current_basis == "uptime"
    assert as_dict(rec)["current_cost_usd"] == "168.000000"


@pytest.mark.django_db
def test_replay_share_over_sla_current_versus_recommended():
    # Current schedule: 1 node. Every hour of the week, 3 jobs of 10 min arrive together:
    # on 1 node they wait 0, 600 and 1200 s → 2/3 over a 60 s SLA. Demand = 0.5 busy nodes
    # → ceil(0.6) = 1 node recommended... so push the buffer to 5 → ceil(3) = 3 nodes.
    p = Pool(sla=60)
    p.set_point("0 0 * * *", 1)
    for h in range(168):
        t = MON + h * H
        for n in ("a", "b", "c"):
            p.job(n, t, t + timedelta(minutes=10))
    p.save()
    rec = recommend_capacity("gpu", fit=PCT, weeks=1, end=END_1W, buffer="5")
    assert rec.nodes == [3] * 168
    out = as_dict(rec)["replay"]
    assert out["current"] == {
        "p50_wait_s": "600.000",
        "p95_wait_s": "1200.000",
        "share_over_sla": "0.666667",
    }
    assert out["recommended"] == {
        "p50_wait_s": "0.000",
        "p95_wait_s": "0.000",
        "share_over_sla": "0.000000",
    }


# --- The command ---------------------------------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("recommend_capacity", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_command_json_keys_are_exactly_the_spec():
    p = Pool(sla=90)
    p.set_point("0 8 * * 1-5", 4)
    p.set_point("0 20 * * 1-5", 1)
    constant_load(p, MON, weeks=1)
    data = json.loads(
        run("--pool", "gpu", "--weeks", "1", "--end", "2026-01-12", "--format", "json")
    )
    assert list(data) == [
        "pool",
        "sla_s",
        "set_points",
        "current_cost_usd",
        "recommended_cost_usd",
        "savings_fraction",
        "replay",
    ]
    assert data["pool"] == "gpu" and data["sla_s"] == 90
    assert all(list(sp) == ["cron", "nodes", "timezone"] for sp in data["set_points"])
    assert isinstance(data["set_points"][0]["nodes"], int)
    assert list(data["replay"]) == ["current", "recommended"]
    for side in data["replay"].values():
        assert list(side) == ["p50_wait_s", "p95_wait_s", "share_over_sla"]
        assert all(isinstance(v, str) for v in side.values())
    for key in ("current_cost_usd", "recommended_cost_usd", "savings_fraction"):
        assert isinstance(data[key], str)
        Decimal(data[key])


@pytest.mark.django_db
def test_command_table_shows_the_grid_and_set_points():
    constant_load(Pool(), MON, weeks=1)
    text = run("--pool", "gpu", "--weeks", "1", "--end", "2026-01-12")
    assert "Recommended nodes per local hour" in text
    assert sum(1 for line in text.splitlines() if line.lstrip().startswith("Mon")) == 2
    assert "0 0 * * *" in text and "p50 wait" in text


@pytest.mark.django_db
def test_command_errors():
    with pytest.raises(CommandError, match="Unknown pool 'nope'"):
        run("--pool", "nope")
    Pool()
    with pytest.raises(CommandError, match="No jobs"):
        run("--pool", "gpu", "--end", "2026-01-12")
    with pytest.raises(CommandError, match="buffer"):
        run("--pool", "gpu", "--buffer", "-1")
    with pytest.raises(CommandError, match="percentile"):
        run("--pool", "gpu", "--percentile", "101")
    with pytest.raises(CommandError, match="weeks"):
        run("--pool", "gpu", "--weeks", "0")
    with pytest.raises(CommandError, match="Not a date"):
        run("--pool", "gpu", "--end", "yesterday")


@pytest.mark.django_db
def test_service_errors_have_codes():
    with pytest.raises(NotFound):
        recommend_capacity("nope")
    Pool()
    with pytest.raises(ValidationError):
        recommend_capacity("gpu", end=END_1W)


@pytest.mark.django_db
def test_run_intervals_are_microseconds_from_the_window_start():
    p = Pool()
    p.job("a", MON - H, MON + timedelta(minutes=10, microseconds=7))
    p.job("b", MON + timedelta(seconds=1.5), MON + 3 * H)
    p.job("c", MON + 2 * H, None)
    p.job("d", MON + timedelta(days=8), MON + timedelta(days=8, hours=1))  # after the window
    p.save()
    end = MON + timedelta(weeks=1)
    assert run_intervals(p.pool, MON, end) == [
        (-3600 * S, 600 * S + 7),
        (1_500_000, 3 * 3600 * S),
        (2 * 3600 * S, 7 * 24 * 3600 * S),
    ]


@pytest.mark.django_db
def test_demo_world_recommendation():
    from generations.demo import seed_world

    now = datetime(2026, 2, 2, 12, tzinfo=UTC)
    seed_world(days=14, seed=1, now=now)
    rec = recommend_capacity("a100", weeks=2, end=date(2026, 2, 2), now=now)
    out = as_dict(rec)
    assert out["sla_s"] == 120 and rec.current_basis == "schedule"
    week = datetime(2026, 1, 26, tzinfo=UTC)
    assert expand_per_slot(as_models(rec.set_points), week, "UTC") == rec.nodes
    # The demo idles ~50%: the recommendation is cheaper than the current schedule.
    assert Decimal(out["savings_fraction"]) > 0
    assert rec.replayed > 1000
