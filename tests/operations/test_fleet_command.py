"""`manage.py fleet`: the fleet at a glance, and one tick on demand."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from infra_costs import fleet
from infra_costs.models import AutoscalePolicy, Node, ScalingDecision
from tests.factories import make_pool

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("fleet", *args, stdout=out)
    return out.getvalue()


def test_without_managed_pools_it_says_how_to_add_one():
    make_pool("a100")
    assert "No fleet-managed pools" in run()


def test_tick_rents_to_the_floor_and_the_table_shows_it():
    pool = make_pool("a100")
    AutoscalePolicy.objects.create(pool=pool)
    out = run("--tick")
    assert out.startswith("Tick: 1 decision, 0 jobs dispatched.")
    node = Node.objects.get(pool=pool)
    assert node.transition == "renting"
    assert "a100  (autoscaler on)" in out
    assert f"{node.name}" in out and "→ renting until" in out
    assert f"rent {node.name}: 0 of the 1 nodes the pool keeps hot" in out
    assert ScalingDecision.objects.count() == 1
    run("--tick")  # the node is on its way: nothing more to do
    assert ScalingDecision.objects.count() == 1


def test_json_lists_nodes_queue_cost_and_decisions():
    pool = make_pool("a100")
    AutoscalePolicy.objects.create(pool=pool, provider_config={"rent_delay_s": [0, 0]})
    now = timezone.now()
    node = fleet.node_rent(pool=pool, now=now - timedelta(minutes=5), primary=True)
    fleet.fleet_advance(now=now)
    [data] = json.loads(run("--format", "json"))
    assert data["pool"] == "a100"
    assert data["nodes"] == [
        {"name": node.name, "state": "hot", "transition": "", "health": "ok", "primary": True}
    ]
    assert data["queue"]["depth"] == 0
    assert float(data["cost_today_usd"]) >= 0
