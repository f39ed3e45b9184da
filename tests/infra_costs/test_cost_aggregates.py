"""The unit-cost report from the per-hour aggregates (`allocation.hourly`) equals the full
recomputation (`allocation.sql`) exactly, whatever happened before it: imports, re-imports,
late live runs, uptime, rate changes on and inside hours, refreshes or none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra_costs import services, tasks
from infra_costs.allocation import hourly, unit_cost_report
from infra_costs.models import (
    CostHourDirty,
    CostHourModel,
    CostHourNode,
    CostHourUptime,
    GpuRun,
    Node,
    NodePool,
    PoolRate,
    UptimeInterval,
)
from tests.infra_costs.conftest import d

BASE = datetime(2026, 3, 28, tzinfo=UTC)  # Berlin switches to summer time on 2026-03-29
PERIODS = [("2026-03-28", "2026-03-29"), ("2026-03-28", "2026-03-30"), ("2026-03-27", "2026-03-31")]
MODELS = ["a", "b", "c"]
STATUSES = ["succeeded", "succeeded", "failed", "cancelled"]


def iso(t: datetime) -> str:
    return t.isoformat()


def full_report(start: str, end: str, **kwargs) -> dict:
    """The report by the full engine (the aggregates bypassed)."""
    eligible = hourly.eligible
    hourly.eligible = lambda inp: False
    try:
        return unit_cost_report(d(start), d(end), **kwargs)
    finally:
        hourly.eligible = eligible


def reset() -> None:
    for model in (GpuRun, UptimeInterval, Node, PoolRate, NodePool):
        model.objects.all().delete()
    for model in (CostHourDirty, CostHourModel, CostHourNode, CostHourUptime):
        model.objects.all().delete()


jobs = st.lists(
    st.tuples(
        st.integers(0, 3),  # node
        st.integers(-6 * 3600, 50 * 3600),  # start, seconds from BASE
        st.integers(1, 4 * 3600),  # length (imports refuse 0)
        st.sampled_from(MODELS),
        st.sampled_from(STATUSES),
    ),
    min_size=1,
    max_size=8,
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("import"), jobs),
        st.tuples(st.just("reimport"), st.integers(0, 5)),
        st.tuples(st.just("late"), jobs),
        st.tuples(
            st.just("uptime"), st.integers(0, 3), st.integers(-6 * 60, 50 * 60), st.integers(1, 900)
        ),
        # a rate version on a whole hour, or inside one (minutes ≠ 0)
        st.tuples(
            st.just("rate"),
            st.integers(0, 1),
            st.integers(-12, 50),
            st.sampled_from([0, 0, 0, 17]),
            st.sampled_from(["0.50", "1.25", "3.60", "2.333333"]),
        ),
        st.just(("refresh",)),
    ),
    min_size=1,
    max_size=8,
)


def node_name(n: int) -> tuple[str, str]:
    pool = f"p{n % 2}"
    return f"{pool}n{n}", pool


def apply(step, done: list[list[dict]], counter: list[int]) -> None:
    kind = step[0]
    if kind in ("import", "late"):
        rows = []
        for n, start, length, model, status in step[1]:
            counter[0] += 1
            node, pool = node_name(n)
            s = BASE + timedelta(seconds=start)
            rows.append(
                {
                    "external_id": f"j{counter[0]}",
                    "model": model,
                    "node": node,
                    "started_at": iso(s),
                    "finished_at": iso(s + timedelta(seconds=length)),
                    "status": status,
                    "pool": pool,
                }
            )
        if kind == "import":
            services.jobs_import(rows=[{k: v for k, v in r.items() if k != "pool"} for r in rows])
            done.append(rows)
            return
        for r in rows:  # live runs, finished late (no refresh: their hours stay dirty)
            services.gpu_run_start(
                external_id=r["external_id"],
                model_slug=r["model"],
                pool=NodePool.objects.get(slug=r["pool"]),
                node_name=r["node"],
                started_at=datetime.fromisoformat(r["started_at"]),
            )
            services.gpu_run_finish(
                external_id=r["external_id"],
                status=r["status"],
                finished_at=datetime.fromisoformat(r["finished_at"]),
            )
    elif kind == "reimport" and done:
        rows = done[step[1] % len(done)]
        result = services.jobs_import(
            rows=[{k: v for k, v in r.items() if k != "pool"} for r in rows]
        )
        assert result.imported == 0
    elif kind == "uptime":
        node, pool = node_name(step[1])
        s = BASE + timedelta(minutes=step[2])
        services.uptime_import(
            rows=[
                {
                    "node": node,
                    "pool": pool,
                    "started_at": iso(s),
                    "ended_at": iso(s + timedelta(minutes=step[3])),
                }
            ],
            skip_invalid=True,  # the same interval twice
        )
    elif kind == "rate":
        _, p, hours, minutes, rate = step
        at = BASE + timedelta(hours=hours, minutes=minutes)
        pool = NodePool.objects.get(slug=f"p{p}")
        if not PoolRate.objects.filter(pool=pool, effective_from=at).exists():
            services.pool_rate_add(
                pool=pool, hourly_rate_usd=Decimal(rate), effective_from=at, actor=None
            )
    elif kind == "refresh":
        services.cost_aggregates_refresh()


def setup_world() -> None:
    services.pools_import(
        rows=[
            {"pool": p, "gpu_type": "L4", "hourly_rate_usd": "1.00", "effective_from": iso(BASE)}
            for p in ("p0", "p1")
        ]
    )
    services.uptime_import(
        rows=[
            {
                "node": node_name(n)[0],
                "pool": node_name(n)[1],
                "started_at": iso(BASE + timedelta(hours=-3, minutes=n * 7)),
                "ended_at": iso(BASE + timedelta(hours=40, minutes=n * 11)),
            }
            for n in range(4)
        ]
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=steps,
    final_refresh=st.booleans(),
    period=st.sampled_from(PERIODS),
    window=st.sampled_from(["day", "hour"]),
    timezone=st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"]),
)
def test_report_from_aggregates_equals_full_recomputation(
    db, plan, final_refresh, period, window, timezone
):
    reset()
    setup_world()
    done: list[list[dict]] = []
    counter = [0]
    for step in plan:
        apply(step, done, counter)
    if final_refresh:
        services.cost_aggregates_refresh()
        assert not CostHourDirty.objects.exists()
    kwargs = {"window": window, "timezone": timezone}
    for idle_policy in ("weighted", "separate"):
        assert unit_cost_report(d(period[0]), d(period[1]), idle_policy=idle_policy, **kwargs) == (
            full_report(*period, idle_policy=idle_policy, **kwargs)
        )


@pytest.mark.django_db
def test_refresh_is_idempotent_and_a_reimport_adds_nothing():
    setup_world()
    rows = [
        {
            "external_id": f"r{i}",
            "model": MODELS[i % 3],
            "node": node_name(i % 4)[0],
            "started_at": iso(BASE + timedelta(minutes=37 * i)),
            "finished_at": iso(BASE + timedelta(minutes=37 * i + 95)),
            "status": STATUSES[i % 4],
        }
        for i in range(40)
    ]
    services.jobs_import(rows=rows)
    assert not CostHourDirty.objects.exists()

    def snapshot():
        return (
            sorted(CostHourUptime.objects.values_list("hour", "pool_id", "kind", "up_us")),
            sorted(
                CostHourNode.objects.values_list(
                    "hour", "node_id", "busy_us", "runs_us", "max_finish"
                )
            ),
            sorted(
                CostHourModel.objects.values_list(
                    "hour", "model_slug", "weight_us", "n_succeeded", "n_failed", "n_cancelled"
                )
            ),
        )

    before = snapshot()
    assert sum(r[3] for r in before[2]) + sum(r[4] for r in before[2]) + sum(
        r[5] for r in before[2]
    ) == len(rows)
    services.jobs_import(rows=rows)
    CostHourDirty.objects.bulk_create(
        [CostHourDirty(hour=BASE + timedelta(hours=h)) for h in range(30)]
    )
    services.cost_aggregates_refresh()
    assert snapshot() == before
    report = unit_cost_report(d("2026-03-28"), d("2026-03-30"))
    assert report == full_report("2026-03-28", "2026-03-30")
    assert report["totals"]["generations"] == sum(1 for r in rows if r["status"] == "succeeded")


@pytest.mark.django_db
def test_a_finished_live_run_marks_its_hours_dirty_in_one_statement(
    django_assert_num_queries,
):
    setup_world()
    services.cost_aggregates_refresh()
    pool = NodePool.objects.get(slug="p0")
    services.gpu_run_start(
        external_id="live-1",
        model_slug="a",
        pool=pool,
        node_name="p0n0",
        started_at=BASE + timedelta(hours=2, minutes=50),
    )
    assert not CostHourDirty.objects.exists()  # a running run is no cost yet
    with django_assert_num_queries(1):  # the UPDATE; its trigger marks the hours
        services.gpu_run_finish(
            external_id="live-1",
            status="succeeded",
            finished_at=BASE + timedelta(hours=3, minutes=5),
        )
    assert sorted(CostHourDirty.objects.values_list("hour", flat=True)) == [
        BASE + timedelta(hours=2),
        BASE + timedelta(hours=3),
    ]
    report = unit_cost_report(d("2026-03-28"), d("2026-03-29"))
    assert report == full_report("2026-03-28", "2026-03-29")
    assert report["models"][0]["generations"] == 1
    assert tasks.refresh_cost_aggregates() == 2  # the beat task stores them
    assert not CostHourDirty.objects.exists()
    assert unit_cost_report(d("2026-03-28"), d("2026-03-29")) == report
