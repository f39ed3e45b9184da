"""Issue 11's burst, end to end on the simulated provider with the clock moved by hand: the
queue grows → the warm standby is resumed → a node is rented → the queue drains → the pool
scales back to warm → the warm nodes are released after the warm limit. The uptime the fleet
recorded per state and rate is checked interval by interval, and `unit_costs` for the period
must equal Σ intervals × rates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from accounts.models import Plan
from generations import services
from generations.models import Job, JobStatus
from infra_costs import fleet
from infra_costs.models import (
    AutoscalePolicy,
    GpuRun,
    Node,
    NodeEvent,
    NodeState,
    PoolRate,
    ScalingAction,
    ScalingDecision,
    UptimeInterval,
)
from operations.fleet import fleet_tick
from tests.factories import make_account, make_ai_model, make_pool

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
T1 = T0 + timedelta(hours=2)  # the burst
HOURLY, WARM = D("2.00"), D("0.40")
PROVIDER = {
    "rent_delay_s": [1800, 1800],
    "resume_delay_s": [120, 120],
    "model_load_s": 60,
    "stop_delay_s": 30,
    "release_delay_s": 30,
}


def m(minutes: float, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


@pytest.fixture
def pool(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    pool = make_pool("a100", rate=str(HOURLY))
    PoolRate.objects.filter(pool=pool).update(warm_hourly_rate_usd=WARM)
    AutoscalePolicy.objects.create(pool=pool, provider_config=PROVIDER, max_nodes=4)
    make_ai_model("sdxl", pool=pool)
    Plan.objects.filter(slug="starter").update(max_concurrent_jobs=None)
    return pool


def tick(traveller, at: datetime):
    traveller.move_to(at)
    return fleet_tick(now=at)


def drain(n: int) -> list[Job]:
    """Run the n oldest queued jobs (a worker would, as the tick publishes them)."""
    jobs = list(Job.objects.filter(status=JobStatus.QUEUED).order_by("enqueued_at", "pk")[:n])
    for job in jobs:
        assert services.generation_run(job_id=job.pk) == "succeeded"
    return jobs


def merged(node: Node) -> list[tuple[str, datetime, datetime]]:
    """The node's recorded uptime, adjacent intervals of one kind merged."""
    out: list[tuple[str, datetime, datetime]] = []
    for iv in UptimeInterval.objects.filter(node=node).order_by("started_at"):
        if out and out[-1][0] == iv.rate_kind and out[-1][2] == iv.started_at:
            out[-1] = (iv.rate_kind, out[-1][1], iv.ended_at)
        else:
            out.append((iv.rate_kind, iv.started_at, iv.ended_at))
    return out


def hours(a: datetime, b: datetime) -> D:
    return D((b - a).total_seconds()) / D(3600)


def test_a_burst_scales_up_drains_scales_back_and_releases(pool):
    account = make_account(plan="starter", credits=100000)
    org = account.organization
    with time_machine.travel(T0, tick=False) as traveller:
        # The floor (min_nodes 1): the primary is rented; 30 min setup + 1 min model load.
        [d] = tick(traveller, T0).decisions
        assert (d.action, d.ok) == (ScalingAction.RENT, True)
        n1 = Node.objects.get(pool=pool)
        assert n1.is_primary and n1.transition == "renting"
        tick(traveller, m(31))
        n1.refresh_from_db()
        assert n1.state == NodeState.HOT
        # A warm standby, by hand (staff): rent, then stop it.
        n2 = fleet.node_rent(pool=pool, now=m(32))
        tick(traveller, m(63))
        assert fleet.node_stop(node=n2, now=m(63))
        tick(traveller, m(64))
        n2.refresh_from_db()
        assert n2.state == NodeState.WARM

        # The burst: 40 jobs.
        traveller.move_to(T1)
        for i in range(40):
            services.generation_submit(
                organization=org, model_slug="sdxl", params={"prompt": f"burst {i}"}
            )
        [d] = tick(traveller, T1).decisions
        assert (d.action, d.node, d.inputs["depth"]) == (ScalingAction.RESUME, n2, 40)
        [d] = tick(traveller, m(10 / 60, T1)).decisions
        assert d.action == ScalingAction.RENT and "no warm standby" in d.reason
        n3 = d.node
        traveller.move_to(m(1, T1))
        first = drain(8)  # only the primary is hot
        assert {j.node for j in Job.objects.filter(pk__in=[j.pk for j in first])} == {n1.name}
        tick(traveller, m(3, T1))
        n2.refresh_from_db()
        assert n2.state == NodeState.HOT
        drain(12)
        traveller.move_to(m(20, T1))
        drain(18)
        assert tick(traveller, m(20, T1)).decisions == []  # 2 queued: calm from now
        tick(traveller, m(31 + 10 / 60, T1))
        n3.refresh_from_db()
        assert n3.state == NodeState.HOT
        drain(2)
        assert not Job.objects.filter(status=JobStatus.QUEUED).exists()

        # Calm for 30 min: the idle non-primary nodes go back to warm, oldest first.
        [d] = tick(traveller, m(50, T1)).decisions
        assert (d.action, d.node) == (ScalingAction.STOP, n2)
        [d] = tick(traveller, m(62, T1)).decisions
        assert (d.action, d.node) == (ScalingAction.STOP, n3)
        tick(traveller, m(63, T1))
        assert set(Node.objects.filter(state=NodeState.WARM)) == {n2, n3}
        n1.refresh_from_db()
        assert n1.state == NodeState.HOT  # the primary stays

        # Warm for over 24 h and no spike ahead: released, one per tick.
        day = 24 * 60
        [d] = tick(traveller, m(day + 55, T1)).decisions
        assert (d.action, d.node) == (ScalingAction.RELEASE, n2)
        [d] = tick(traveller, m(day + 64, T1)).decisions
        assert (d.action, d.node) == (ScalingAction.RELEASE, n3)
        tick(traveller, m(day + 65, T1))
        assert set(Node.objects.filter(state=NodeState.COLD)) == {n2, n3}
        tick(traveller, m(72 * 60 + 1))  # closes the primary's uptime up to T0 + 72 h

    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 40
    assert GpuRun.objects.filter(status="succeeded").count() == 40
    assert ScalingDecision.objects.filter(ok=False).count() == 0
    # No run ever started on a node that was not hot: its node's last lifecycle event before
    # the run is "hot, nothing under way".
    for run in GpuRun.objects.select_related("node"):
        last = (
            NodeEvent.objects.filter(node=run.node, at__lte=run.started_at)
            .order_by("-at", "-id")
            .first()
        )
        assert (last.state, last.transition) == (NodeState.HOT, ""), run

    # The recorded uptime, per state and rate.
    assert merged(n1) == [("on_demand", T0, m(72 * 60))]
    assert merged(n2) == [
        ("on_demand", m(32), m(63.5)),  # rented by hand; billed from the request
        ("warm", m(63.5), T1),  # stopped (30 s) → warm
        ("on_demand", T1, m(50.5, T1)),  # resumed at the burst, stopped after the calm
        ("warm", m(50.5, T1), m(24 * 60 + 55.5, T1)),  # released after 24 h warm
    ]
    assert merged(n3) == [
        ("on_demand", m(10 / 60, T1), m(62.5, T1)),
        ("warm", m(62.5, T1), m(24 * 60 + 64.5, T1)),
    ]
    expected = D(0)
    for node in (n1, n2, n3):
        for kind, a, b in merged(node):
            expected += hours(a, b) * (WARM if kind == "warm" else HOURLY)

    out = StringIO()
    call_command(
        "unit_costs", "--start", "2026-03-02", "--end", "2026-03-05", "--format", "json", stdout=out
    )
    report = json.loads(out.getvalue())
    assert D(report["totals"]["infra_cost_usd"]) == expected.quantize(D("0.000001"))
    [line] = report["pools"]
    assert D(line["cost_usd"]) == expected.quantize(D("0.000001"))
