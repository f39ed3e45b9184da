"""Admin of pools: rate versions are added (never edited) with who and why, schedule set-points
are validated, uptime and GPU runs are read-only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import AuditEvent, User
from infra_costs.models import (
    GpuRun,
    Node,
    NodePool,
    RateKind,
    ScheduleSetPoint,
    UptimeInterval,
)
from tests.factories import make_pool

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser(email="ops@example.com", password="x-very-secret-1")
    client.force_login(user)
    client.user = user
    return client


def pool_form(pool: NodePool, *, rates: list[dict] = (), set_points: list[dict] = ()) -> dict:
    existing_rates = list(pool.rates.all())
    existing_sps = list(pool.set_points.all())
    data = {
        "slug": pool.slug,
        "gpu_type": pool.gpu_type,
        "description": pool.description,
        "sla_queue_wait_s": pool.sla_queue_wait_s,
        "min_nodes": pool.min_nodes,
        "timezone": pool.timezone,
        "rates-TOTAL_FORMS": len(existing_rates) + len(rates),
        "rates-INITIAL_FORMS": len(existing_rates),
        "rates-MIN_NUM_FORMS": 0,
        "rates-MAX_NUM_FORMS": 1000,
        "set_points-TOTAL_FORMS": len(existing_sps) + len(set_points),
        "set_points-INITIAL_FORMS": len(existing_sps),
        "set_points-MIN_NUM_FORMS": 0,
        "set_points-MAX_NUM_FORMS": 1000,
    }
    for i, rate in enumerate(existing_rates):
        data[f"rates-{i}-id"] = rate.pk
        data[f"rates-{i}-pool"] = pool.pk
    for j, rate in enumerate(rates, start=len(existing_rates)):
        data[f"rates-{j}-pool"] = pool.pk
        for key, value in rate.items():
            data[f"rates-{j}-{key}"] = value
    for i, sp in enumerate(existing_sps):
        data.update(
            {
                f"set_points-{i}-id": sp.pk,
                f"set_points-{i}-pool": pool.pk,
                f"set_points-{i}-cron": sp.cron,
                f"set_points-{i}-node_count": sp.node_count,
                f"set_points-{i}-timezone": sp.timezone,
                f"set_points-{i}-active": "on" if sp.active else "",
            }
        )
    for j, sp in enumerate(set_points, start=len(existing_sps)):
        data[f"set_points-{j}-pool"] = pool.pk
        for key, value in sp.items():
            data[f"set_points-{j}-{key}"] = value
    return data


def test_a_new_rate_version_is_added_with_who_and_why_and_the_old_one_stays(staff_client):
    pool = make_pool("a100", rate="3.60")
    old = pool.rates.get()
    url = f"/admin/infra_costs/nodepool/{pool.pk}/change/"
    assert staff_client.get(url).status_code == 200

    response = staff_client.post(
        url,
        pool_form(
            pool,
            rates=[
                {
                    "hourly_rate_usd": "2.950000",
                    "effective_from_0": "2026-03-01",
                    "effective_from_1": "00:00:00",
                    "reason": "new contract",
                }
            ],
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    rates = list(pool.rates.order_by("effective_from"))
    assert [r.hourly_rate_usd for r in rates] == [Decimal("3.60"), Decimal("2.95")]
    assert rates[0].pk == old.pk and rates[0].hourly_rate_usd == old.hourly_rate_usd
    assert rates[1].created_by == staff_client.user and rates[1].reason == "new contract"
    audit = AuditEvent.objects.get(action="infra_costs.pool_rate_added")
    assert audit.actor == staff_client.user and audit.data["hourly_rate_usd"] == "2.950000"


def test_an_existing_rate_version_cannot_be_edited_through_the_admin(staff_client):
    pool = make_pool("a100", rate="3.60")
    data = pool_form(pool)
    data["rates-0-hourly_rate_usd"] = "0.01"  # a read-only field: ignored
    response = staff_client.post(f"/admin/infra_costs/nodepool/{pool.pk}/change/", data)
    assert response.status_code == 302
    assert pool.rates.get().hourly_rate_usd == Decimal("3.60")
    assert not AuditEvent.objects.filter(action="infra_costs.pool_rate_added").exists()


def test_a_second_version_at_the_same_instant_is_a_form_error_not_a_500(staff_client):
    pool = make_pool("a100", rate="3.60")  # effective 2020-01-01 00:00 UTC
    response = staff_client.post(
        f"/admin/infra_costs/nodepool/{pool.pk}/change/",
        pool_form(
            pool,
            rates=[
                {
                    "hourly_rate_usd": "1",
                    "effective_from_0": "2020-01-01",
                    "effective_from_1": "00:00:00",
                }
            ],
        ),
    )
    assert response.status_code == 200
    assert pool.rates.count() == 1


@pytest.mark.parametrize(
    ("cron", "tz", "message"),
    [
        ("0 8 * *", "UTC", "5-field cron"),
        ("0 25 * * *", "UTC", "not a valid cron"),
        ("0 8 * * 1-5", "Mars/Olympus", "Unknown time zone"),
    ],
)
def test_schedule_set_points_are_validated(staff_client, cron, tz, message):
    pool = make_pool("a100")
    response = staff_client.post(
        f"/admin/infra_costs/nodepool/{pool.pk}/change/",
        pool_form(pool, set_points=[{"cron": cron, "node_count": 2, "timezone": tz}]),
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ScheduleSetPoint.objects.exists()


def test_a_valid_set_point_is_saved_normalised(staff_client):
    pool = make_pool("a100")
    response = staff_client.post(
        f"/admin/infra_costs/nodepool/{pool.pk}/change/",
        pool_form(
            pool,
            set_points=[
                {
                    "cron": " 0  8 * * 1-5",
                    "node_count": 3,
                    "timezone": "Europe/Paris",
                    "active": "on",
                }
            ],
        ),
    )
    assert response.status_code == 302
    sp = ScheduleSetPoint.objects.get()
    assert (sp.cron, sp.node_count, sp.timezone) == ("0 8 * * 1-5", 3, "Europe/Paris")


def test_uptime_and_gpu_runs_are_read_only_and_their_lists_open(staff_client):
    for model in (UptimeInterval, GpuRun):
        url = f"/admin/infra_costs/{model._meta.model_name}/"
        assert staff_client.get(url).status_code == 200
        assert staff_client.get(url + "add/").status_code == 403


def test_a_rate_version_carries_its_warm_and_spot_rates(staff_client):
    pool = make_pool("a100", rate="3.60")
    url = f"/admin/infra_costs/nodepool/{pool.pk}/change/"
    page = staff_client.get(url).content.decode()
    assert "warm_hourly_rate_usd" in page and "spot_hourly_rate_usd" in page
    response = staff_client.post(
        url,
        pool_form(
            pool,
            rates=[
                {
                    "hourly_rate_usd": "3.00",
                    "warm_hourly_rate_usd": "0.40",
                    "spot_hourly_rate_usd": "1.10",
                    "effective_from_0": "2026-03-01",
                    "effective_from_1": "00:00:00",
                    "reason": "spot capacity",
                }
            ],
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    new = pool.rates.order_by("effective_from").last()
    assert (new.warm_hourly_rate_usd, new.spot_hourly_rate_usd) == (Decimal("0.4"), Decimal("1.1"))
    audit = AuditEvent.objects.get(action="infra_costs.pool_rate_added")
    assert audit.data["spot_hourly_rate_usd"] == "1.10"


def test_the_uptime_list_shows_the_rate_kind(staff_client):
    pool = make_pool("a100", rate="3.60")
    node = Node.objects.create(name="n1", pool=pool)
    UptimeInterval.objects.create(
        node=node,
        pool=pool,
        started_at=datetime(2026, 1, 5, tzinfo=UTC),
        ended_at=datetime(2026, 1, 5, 6, tzinfo=UTC),
        rate_kind=RateKind.WARM,
    )
    page = staff_client.get("/admin/infra_costs/uptimeinterval/").content.decode()
    assert "Warm (stopped, leased)" in page
    filtered = staff_client.get("/admin/infra_costs/uptimeinterval/?rate_kind__exact=spot")
    assert filtered.status_code == 200 and "n1" not in filtered.content.decode()
