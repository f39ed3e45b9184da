"""Admin of the fleet: autoscale policies validated (provider settings by the provider itself,
thresholds in order) with form errors, never a 500; decisions and node events read-only; node
actions that go through the staff action service, one message per node."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from accounts.models import User
from infra_costs import fleet
from infra_costs.models import (
    AutoscalePolicy,
    Node,
    NodeState,
    NodeTransition,
    ScalingDecision,
)
from tests.factories import make_pool

pytestmark = pytest.mark.django_db

FAST = {"rent_delay_s": [600, 600], "resume_delay_s": [120, 120], "model_load_s": 0}
ADD = "/admin/infra_costs/autoscalepolicy/add/"


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser(email="ops@example.com", password="x-very-secret-1")
    client.force_login(user)
    client.user = user
    return client


def policy_form(pool, **overrides) -> dict:
    data = {
        "pool": pool.pk,
        "enabled": "on",
        "provider": "simulated",
        "provider_config": json.dumps(FAST),
        "capacity_type": "on_demand",
        "max_nodes": 8,
        "node_slots": 1,
        "resume_queue_depth": 10,
        "rent_queue_depth": 30,
        "calm_queue_depth": 3,
        "calm_for_s": 1800,
        "warm_release_after_s": 86400,
        "priority_wait_s": 30,
        "free_tier_max_wait_s": 60,
    }
    data.update(overrides)
    return data


def errors_of(response) -> dict:
    form = response.context["adminform"].form
    return {k: [str(e) for e in v] for k, v in form.errors.items()}


def test_a_valid_policy_is_saved(admin_client):
    pool = make_pool("a100")
    response = admin_client.post(ADD, policy_form(pool))
    assert response.status_code == 302
    policy = AutoscalePolicy.objects.get(pool=pool)
    assert policy.provider_config == FAST and policy.rent_queue_depth == 30


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"provider_config": json.dumps({"rent_delay_s": [600, 60], "bogus": 1})},
            "provider_config",
            "rent_delay_s: Must be [min, max] seconds, 0 ≤ min ≤ max ≤ 7 days.",
        ),
        (
            {"provider_config": json.dumps({"rent_delay_s": [600, 600], "bogus": 1})},
            "provider_config",
            "bogus: Unknown setting.",
        ),
        (
            {"provider_config": json.dumps({"rent_failure_rate": 2})},
            "provider_config",
            "rent_failure_rate: Must be a number from 0 to 1.",
        ),
        ({"provider_config": "[1, 2]"}, "provider_config", "Must be an object of settings."),
        ({"provider_config": "{not json"}, "provider_config", "Enter a valid JSON."),
        ({"provider": "acme"}, "provider", None),
        ({"resume_queue_depth": 40}, "resume_queue_depth", None),
        ({"rent_queue_depth": -1}, "rent_queue_depth", None),
        ({"calm_for_s": "-5"}, "calm_for_s", None),
    ],
)
def test_a_bad_policy_is_a_form_error(admin_client, overrides, field, message):
    pool = make_pool("a100")
    response = admin_client.post(ADD, policy_form(pool, **overrides))
    assert response.status_code == 200
    errors = errors_of(response)
    assert field in errors, errors
    if message is not None:
        assert message in errors[field]
    assert not AutoscalePolicy.objects.exists()


def test_the_policy_change_form_and_list_render(admin_client):
    pool = make_pool("a100")
    policy = AutoscalePolicy.objects.create(pool=pool, provider_config=FAST)
    assert admin_client.get("/admin/infra_costs/autoscalepolicy/").status_code == 200
    url = f"/admin/infra_costs/autoscalepolicy/{policy.pk}/change/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, policy_form(pool, rent_queue_depth=5))
    assert response.status_code == 200  # resume 10 > rent 5
    assert "resume_queue_depth" in errors_of(response)


def managed_nodes():
    pool = make_pool("a100")
    AutoscalePolicy.objects.create(pool=pool, provider_config=FAST)
    t = datetime.now(UTC) - timedelta(hours=1)
    hot = fleet.node_rent(pool=pool, now=t)
    warm = fleet.node_rent(pool=pool, now=t)
    fleet.fleet_advance(now=t + timedelta(minutes=10))
    fleet.node_stop(node=warm, now=t + timedelta(minutes=11))
    fleet.fleet_advance(now=t + timedelta(minutes=12))
    hot.refresh_from_db()
    warm.refresh_from_db()
    assert (hot.state, warm.state) == (NodeState.HOT, NodeState.WARM)
    return pool, hot, warm


def run_action(client, action: str, nodes: list[Node]) -> list[str]:
    """Run an admin action on the nodes; the messages it showed (the redirect followed)."""
    response = client.post(
        "/admin/infra_costs/node/",
        {"action": action, "_selected_action": [n.pk for n in nodes]},
        follow=True,
    )
    assert response.redirect_chain and response.status_code == 200
    return sorted(str(m) for m in response.context["messages"])


def test_node_actions_go_through_the_staff_service_with_a_message_per_node(admin_client):
    _, hot, warm = managed_nodes()
    said = run_action(admin_client, "fleet_stop", [hot, warm])
    assert said == sorted(
        [f"{hot.name}: stop to warm requested.", f"{warm.name}: The node is warm now."]
    )
    hot.refresh_from_db()
    assert hot.transition == NodeTransition.STOPPING
    decisions = list(ScalingDecision.objects.order_by("id"))
    assert [(d.node, d.ok, d.decided_by) for d in decisions] == [
        (hot, True, admin_client.user),
        (warm, False, admin_client.user),
    ]
    assert run_action(admin_client, "fleet_resume", [warm]) == [f"{warm.name}: resume requested."]
    assert run_action(admin_client, "fleet_release", [hot]) == [
        f"{hot.name}: The node is stopping now."
    ]
    unmanaged = Node.objects.create(pool=make_pool("l4"), name="imported-1")
    assert run_action(admin_client, "fleet_release", [unmanaged]) == [
        "imported-1: This pool is not managed by the fleet."
    ]


def test_decisions_and_node_events_are_read_only_lists(admin_client):
    pool, hot, _ = managed_nodes()
    fleet.fleet_staff_action(pool=pool, action="stop", node=hot, actor=admin_client.user)
    for model in ("scalingdecision", "nodeevent", "node"):
        response = admin_client.get(f"/admin/infra_costs/{model}/")
        assert response.status_code == 200, model
    decision = ScalingDecision.objects.get()
    response = admin_client.get("/admin/infra_costs/scalingdecision/?ok__exact=1&action=stop")
    assert response.status_code == 200 and "by ops@example.com" in response.content.decode()
    assert admin_client.get("/admin/infra_costs/scalingdecision/add/").status_code == 403
    change = admin_client.post(
        f"/admin/infra_costs/scalingdecision/{decision.pk}/change/", {"reason": "edited"}
    )
    assert change.status_code == 403
    decision.refresh_from_db()
    assert decision.reason == "by ops@example.com"
    assert admin_client.get("/admin/infra_costs/nodeevent/add/").status_code == 403
