"""The capacity plan (issue 12): the SLA fit saves ≥ 25% on the demo's a100 with the replayed
p95 wait within the SLA; "apply as schedule" writes a new schedule version (history kept,
audit row) that the unit-cost report's planned uptime, the autoscaler's floor and the next
recommendation all follow from its time on; the staff page and its form errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from infra_costs.allocation import unit_cost_report
from infra_costs.capacity import recommend_capacity
from infra_costs.capacity.fifo import ReplayStats
from infra_costs.capacity.fit import candidates, fit_to_sla
from infra_costs.capacity.services import schedule_version_apply
from infra_costs.capacity.setpoints import SetPoint
from infra_costs.fleet.autoscaler import setpoint_now
from infra_costs.models import NodePool, PoolRate, ScheduleSetPoint, ScheduleVersion
from infra_costs.schedule import active_set_points, planned_uptime
from tests.factories import UserFactory

NOW = datetime(2026, 2, 2, 12, tzinfo=UTC)
END = date(2026, 2, 2)


@pytest.fixture
def demo(db):
    from generations.demo import seed_world

    seed_world(days=35, seed=1, now=NOW)


# --- The recommendation ----------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_a100_saves_a_quarter_with_p95_within_the_sla(demo):
    rec = recommend_capacity("a100", weeks=4, end=END, now=NOW)
    sla = rec.pool.sla_queue_wait_s
    assert rec.fit == "sla" and rec.current_basis == "schedule"
    assert rec.savings_fraction >= Decimal("0.25")
    p95 = rec.replay["recommended"].p95_wait_s
    assert p95 is not None and p95 <= sla
    assert rec.replay["recommended"].share_over_sla <= Decimal("0.05")
    # The fit only trims §3's formula, never below the pool's minimum.
    formula = recommend_capacity("a100", weeks=4, end=END, now=NOW, fit="percentile")
    assert formula.nodes == rec.formula_nodes
    assert all(rec.min_nodes <= n <= f for n, f in zip(rec.nodes, rec.formula_nodes, strict=True))
    assert rec.recommended_cost_usd <= formula.recommended_cost_usd


def stats(p95: str | None) -> ReplayStats:
    return ReplayStats(1, Decimal(0), None if p95 is None else Decimal(p95), Decimal(0))


def test_fit_trims_least_loaded_levels_first_and_keeps_the_sla():
    nodes = [3, 3, 2, 1]
    mean = [Fraction(1, 2), Fraction(2), Fraction(1, 10), Fraction(1, 2)]
    levels = candidates(nodes, mean, mean, 1)
    # slot 2 → 1 node (0.1/1), slot 0 → 2 (0.25), slot 0 → 1 (0.5); slot 1 stays above its mean 2.
    assert levels == [(2, 1), (0, 2), (0, 1)]

    def evaluate(per_slot):  # the SLA breaks when slot 0 drops to one node
        return stats("200" if per_slot[0] == 1 else "10")

    out, replays = fit_to_sla(nodes, mean, 1, 120, evaluate)
    assert out == [2, 3, 1, 1] and replays >= 2


def test_fit_leaves_a_plan_that_already_misses_the_sla():
    nodes = [2, 2]
    mean = [Fraction(1, 10)] * 2
    assert fit_to_sla(nodes, mean, 1, 60, lambda _: stats("90")) == ([2, 2], 1)
    assert fit_to_sla(nodes, mean, 1, 60, lambda _: stats(None)) == ([2, 2], 1)


# --- Apply as schedule ----------------------------------------------------------------------


def make_pool(slug="gpu") -> NodePool:
    pool = NodePool.objects.create(slug=slug, gpu_type="X", sla_queue_wait_s=60)
    PoolRate.objects.create(
        pool=pool, hourly_rate_usd=Decimal("2.00"), effective_from=datetime(2020, 1, 1, tzinfo=UTC)
    )
    ScheduleSetPoint.objects.create(pool=pool, cron="0 0 * * *", node_count=2, timezone="UTC")
    return pool


def cost(start: datetime, end: datetime, slug="gpu") -> Decimal:
    data = unit_cost_report(start, end, window="day", idle_policy="weighted", timezone="UTC")
    return next(Decimal(p["cost_usd"]) for p in data["pools"] if p["pool"] == slug)


@pytest.mark.django_db
def test_apply_changes_planned_uptime_from_then_on_and_keeps_history():
    pool = make_pool()
    staff = UserFactory(is_staff=True)
    applied_at = datetime(2026, 3, 1, tzinfo=UTC)
    before = (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))
    after = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    assert cost(*before) == cost(*after) == Decimal("96.000000")  # 2 nodes × 24 h × $2

    v1 = schedule_version_apply(
        pool=pool,
        set_points=[SetPoint("0 8 * * *", 3, "UTC", 0), SetPoint("0 20 * * *", 1, "UTC", 0)],
        user=staff,
        reason="capacity plan: weekday peak",
        now=applied_at,
    )
    v2 = schedule_version_apply(
        pool=pool,
        set_points=[SetPoint("0 0 * * *", 1, "UTC", 0)],
        user=staff,
        reason="one node is enough",
        now=applied_at + timedelta(hours=12),
    )
    assert cost(*after) == Decimal("48.000000")  # 1 node × 24 h × $2: the latest version
    assert cost(*before) == Decimal("96.000000")  # earlier periods keep their schedule
    # The apply day: 00–08 v1's last firing before (20:00 → 1), 08–12 three, then v2's one.
    day = (applied_at, applied_at + timedelta(days=1))
    assert cost(*day) == Decimal(2 * (8 * 1 + 4 * 3 + 12 * 1))
    sizes = {(iv.started_at, iv.ended_at) for iv in planned_uptime(pool, *day)}
    assert (applied_at + timedelta(hours=8), applied_at + timedelta(hours=12)) in sizes

    # History: both versions and the original set-point are kept unchanged.
    assert list(pool.schedule_versions.order_by("number").values_list("number", "reason")) == [
        (1, "capacity plan: weekday peak"),
        (2, "one node is enough"),
    ]
    assert v1.set_points.count() == 2 and v2.set_points.count() == 1
    assert ScheduleSetPoint.objects.filter(pool=pool, version__isnull=True).count() == 1
    assert [sp.node_count for sp in active_set_points(pool)] == [1]
    assert [sp.node_count for sp in active_set_points(pool, before[0])] == [2]
    # The autoscaler's floor follows the version in force.
    assert setpoint_now(pool, before[0]) == 2
    assert setpoint_now(pool, applied_at + timedelta(hours=9)) == 3
    assert setpoint_now(pool, after[0]) == 1
    # Audit rows with who and why.
    events = AuditEvent.objects.filter(action="schedule.version_applied").order_by("id")
    assert [e.actor_id for e in events] == [staff.pk, staff.pk]
    assert events[1].data["reason"] == "one node is enough"
    assert events[1].target_id == str(v2.pk)


@pytest.mark.django_db
def test_apply_needs_a_reason_and_writes_nothing_without_one():
    from config.errors import ValidationError

    pool = make_pool()
    with pytest.raises(ValidationError):
        schedule_version_apply(
            pool=pool, set_points=[SetPoint("0 0 * * *", 1, "UTC", 0)], user=None, reason="  "
        )
    assert not ScheduleVersion.objects.exists()
    assert not AuditEvent.objects.filter(action="schedule.version_applied").exists()


# --- The staff page ---------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    client.user = user
    return client


@pytest.mark.django_db
def test_page_shows_each_pool_with_chart_costs_and_replay(demo, staff_client):
    url = reverse("staff_costs:capacity")
    response = staff_client.get(url, {"end": "2026-02-02"})
    assert response.status_code == 200
    html = response.content.decode()
    for slug in ("a100", "l4"):
        assert f'id="pool-{slug}"' in html
        assert f'data-chart="capacity" data-pool="{slug}"' in html
    assert "<svg" in html and "Apply as schedule" in html and "p95 wait" in html
    assert "http://" not in html.split("<svg", 1)[1].split("</svg>", 1)[0].replace(
        "http://www.w3.org/2000/svg", ""
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [{"weeks": "0"}, {"weeks": "x"}, {"percentile": "101"}, {"buffer": "-1"}, {"min_nodes": "-2"}],
)
def test_bad_parameters_are_form_errors(staff_client, params):
    response = staff_client.get(reverse("staff_costs:capacity"), params)
    assert response.status_code == 400
    assert b"field-error" in response.content


@pytest.mark.django_db
def test_page_is_staff_only(client, db):
    url = reverse("staff_costs:capacity")
    assert client.get(url).status_code == 302
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    apply = reverse("staff_costs:capacity_apply", args=["a100"])
    assert client.post(apply, {"reason": "x"}).status_code == 404


@pytest.mark.django_db
def test_apply_from_the_page_writes_the_recommendation_as_a_version(demo, staff_client):
    pool = NodePool.objects.get(slug="a100")
    apply = reverse("staff_costs:capacity_apply", args=["a100"])
    form = {"weeks": "4", "percentile": "90", "buffer": "0.2", "end": "2026-02-02"}
    missing = staff_client.post(apply, form)
    assert missing.status_code == 400 and b"Say why the schedule changes." in missing.content
    assert not ScheduleVersion.objects.exists()

    response = staff_client.post(apply, {**form, "reason": "Q1 capacity review"})
    assert response.status_code == 302
    version = ScheduleVersion.objects.get(pool=pool)
    assert version.created_by == staff_client.user and version.reason == "Q1 capacity review"
    rec = recommend_capacity(pool, weeks=4, end=END)
    written = [(sp.cron, sp.node_count, sp.timezone) for sp in version.set_points.order_by("id")]
    assert written == [(sp.cron, sp.nodes, sp.timezone) for sp in rec.set_points]
    # The current schedule is now the recommendation: nothing left to save.
    again = recommend_capacity(pool, weeks=4, end=END)
    assert again.current_cost_usd == rec.recommended_cost_usd
    assert AuditEvent.objects.filter(action="schedule.version_applied").count() == 1
