"""The staff fleet page (/staff/fleet/): who may see it, what it shows of each managed pool, and
the staff actions — each changes the node through the lifecycle and is recorded as a decision
by the acting user; a bad request is a 404 or a message, never a 500."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from accounts.models import Plan, User
from generations import services
from generations.selectors import queue_signals
from infra_costs import fleet
from infra_costs.fleet.selectors import fleet_cost_today
from infra_costs.models import (
    AutoscalePolicy,
    Node,
    NodeHealth,
    NodeState,
    NodeTransition,
    PoolRate,
    ScalingAction,
    ScalingDecision,
)
from tests.factories import UserFactory, make_account, make_ai_model, make_pool

pytestmark = pytest.mark.django_db

URL = "/staff/fleet/"
FAST = {"rent_delay_s": [600, 600], "resume_delay_s": [120, 120], "model_load_s": 0}


@pytest.fixture
def staff(client):
    user = User.objects.create_user(email="ops@example.com", password="pw-1234567", is_staff=True)
    client.force_login(user)
    return user


def action_url(pool_slug: str) -> str:
    return f"{URL}{pool_slug}/action/"


def managed_pool(slug="a100", **policy):
    pool = make_pool(slug)
    PoolRate.objects.filter(pool=pool).update(warm_hourly_rate_usd=Decimal("0.50"))
    AutoscalePolicy.objects.create(
        pool=pool, provider_config={**FAST, **policy.pop("provider_config", {})}, **policy
    )
    return pool


def hot_node(pool, now, *, primary=False) -> Node:
    node = fleet.node_rent(pool=pool, now=now, primary=primary)
    fleet.fleet_advance(now=node.transition_ready_at, pool_ids=[pool.pk])
    node.refresh_from_db()
    assert node.state == NodeState.HOT
    return node


def warm_node(pool, now) -> Node:
    node = hot_node(pool, now)
    assert fleet.node_stop(node=node, now=now + timedelta(minutes=11))
    fleet.fleet_advance(now=now + timedelta(minutes=12), pool_ids=[pool.pk])
    node.refresh_from_db()
    assert node.state == NodeState.WARM
    return node


@pytest.fixture
def world(staff):
    """Pool a100 with a node in each state (one serving as the primary, one cold after a
    release, one being rented), the hot one degraded, a decision of the autoscaler and one of
    staff; pool l4 with one hot node."""
    t = timezone.now() - timedelta(hours=2)
    a100, l4 = managed_pool("a100"), managed_pool("l4")
    primary = hot_node(a100, t, primary=True)
    warm = warm_node(a100, t + timedelta(minutes=1))
    hot = hot_node(a100, t + timedelta(minutes=2))
    cold = hot_node(a100, t + timedelta(minutes=3))
    # (rented before the release: a rent reuses a released node's name)
    renting = fleet.node_rent(pool=a100, now=timezone.now() - timedelta(minutes=1))
    assert fleet.node_release(node=cold, now=t + timedelta(minutes=20))
    fleet.fleet_advance(now=t + timedelta(minutes=21), pool_ids=[a100.pk])
    assert fleet.node_acquire(pool_id=a100.pk, now=t + timedelta(minutes=30)) == primary.name
    Node.objects.filter(pk=hot.pk).update(health=NodeHealth.DEGRADED)
    other = hot_node(l4, t)
    ScalingDecision.objects.create(
        pool=a100,
        at=t + timedelta(minutes=5),
        action=ScalingAction.RESUME,
        node=warm,
        reason="14 jobs queued",
        inputs={"depth": 14, "hot": 1, "warm": 1, "leased": 3},
        ok=False,
        error="The node was no longer in a state to do that.",
    )
    fleet.fleet_staff_action(
        pool=a100, action="stop", node=warm, actor=staff, now=t + timedelta(minutes=6)
    )
    for n in (primary, warm, hot, cold, renting, other):
        n.refresh_from_db()
    return {
        "a100": a100,
        "l4": l4,
        "primary": primary,
        "warm": warm,
        "hot": hot,
        "cold": cold,
        "renting": renting,
        "other": other,
    }


def node_block(html: str, name: str) -> str:
    match = re.search(rf'<li class="fleet-node" id="node-{name}".*?</li>', html, re.S)
    assert match, name
    return match.group(0)


def group_of(html: str, name: str) -> str:
    """The state group a node is listed under on the page."""
    start = html.index(f'id="node-{name}"')
    return re.findall(r'data-group="(\w+)"', html[:start])[-1]


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Access ------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in_and_others_get_a_404(client):
    pool = managed_pool()
    response = client.get(URL)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.post(action_url(pool.slug), {"action": "rent"}).status_code == 302
    client.force_login(UserFactory())
    assert client.get(URL).status_code == 404
    assert client.post(action_url(pool.slug), {"action": "rent"}).status_code == 404
    assert not Node.objects.exists() and not ScalingDecision.objects.exists()


def test_the_page_is_linked_from_the_staff_nav_and_the_landing_page(staff, client):
    html = client.get("/staff/").content.decode()
    assert html.count(f'href="{URL}"') >= 2
    page = client.get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">Fleet</a>' in page


def test_without_managed_pools_the_page_says_how_to_get_one(staff, client):
    make_pool("a100")  # no autoscale policy
    response = client.get(URL)
    assert response.status_code == 200
    assert "No pool is managed by the fleet yet" in response.content.decode()


# --- Content -----------------------------------------------------------------------------------


def test_each_pool_shows_its_nodes_by_state_with_transition_health_and_primary(world, client):
    html = client.get(URL).content.decode()
    w = world
    assert html.index('id="pool-a100"') < html.index('id="pool-l4"')
    assert group_of(html, w["primary"].name) == "serving"
    assert group_of(html, w["hot"].name) == "hot"
    assert group_of(html, w["warm"].name) == "warm"
    assert group_of(html, w["cold"].name) == "cold"
    assert group_of(html, w["renting"].name) == "cold"
    assert "primary" in node_block(html, w["primary"].name)
    assert 'data-health="degraded"' in node_block(html, w["hot"].name)
    renting = node_block(html, w["renting"].name)
    ready = timezone.localtime(w["renting"].transition_ready_at).strftime("%H:%M")
    assert "renting" in renting and f"ready {ready}" in renting
    # Actions where the state allows them, and only there.
    assert 'value="stop"' in node_block(html, w["hot"].name)
    assert 'value="resume"' in node_block(html, w["warm"].name)
    assert 'value="release"' in node_block(html, w["warm"].name)
    for name in (w["primary"].name, w["cold"].name, w["renting"].name):
        assert "<button" not in node_block(html, name)
    counts = dict(re.findall(r'data-state-count="(\w+)">\w+ <strong>(\d+)</strong>', html)[:4])
    assert counts == {"cold": "2", "warm": "1", "hot": "1", "serving": "1"}
    assert html.count('value="rent"') == 2  # one "Rent a node" per pool


def test_the_queue_per_tier_and_the_cost_today_are_those_of_the_selectors(world, client):
    pool = world["a100"]
    make_ai_model("sdxl", pool=pool)
    Plan.objects.filter(slug="starter").update(max_concurrent_jobs=None)
    org = make_account(plan="starter", credits=1000).organization
    for i in range(3):
        services.generation_submit(organization=org, model_slug="sdxl", params={"prompt": f"{i}"})
    html = client.get(URL).content.decode()
    signals = queue_signals(pool_ids=[pool.pk])[pool.pk]
    assert signals.depth == 3
    section = html[html.index('id="pool-a100"') : html.index('id="pool-l4"')]
    for tier, depth in signals.depth_by_tier.items():
        assert re.search(rf'data-tier="{tier}">{tier} <strong>{depth}</strong>', section)
    cost = fleet_cost_today(now=timezone.now())[pool.pk]
    assert cost > 0
    shown = re.search(r'data-testid="cost-today">.*?<strong title="([\d.]+) USD">', section, re.S)
    assert abs(Decimal(shown.group(1)) - cost) < Decimal("0.01")  # a few seconds later


def test_the_last_decisions_are_listed_with_result_and_who(world, client, staff):
    html = client.get(URL).content.decode()
    section = html[html.index('id="pool-a100"') : html.index('id="pool-l4"')]
    rows = re.findall(r"<tr data-decision=.*?</tr>", section, re.S)
    assert len(rows) == 2
    newest, older = rows
    assert 'data-action="stop"' in newest and staff.email in newest
    assert "The node is warm now." in newest
    assert 'data-action="resume"' in older and "autoscaler" in older
    assert 'data-ok="false"' in older and "no longer in a state" in older
    assert "queued 14 · hot 1 · warm 1 · leased 3" in older
    assert world["warm"].name in older and "14 jobs queued" in older


def test_htmx_refreshes_get_the_body_only(world, client):
    response = client.get(URL, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert html.lstrip().startswith('<div id="fleet-body"') and "<html" not in html
    assert 'hx-trigger="every 10s"' in html and world["warm"].name in html


def test_the_page_takes_a_fixed_number_of_queries(world, client, django_assert_max_num_queries):
    for slug in ("h100", "rtx4090"):
        pool = managed_pool(slug, max_nodes=20)
        for i in range(4):
            node = hot_node(pool, timezone.now() - timedelta(hours=3, minutes=i))
            fleet.fleet_staff_action(
                pool=pool, action="stop", node=node, actor=User.objects.get(is_staff=True)
            )
    with django_assert_max_num_queries(10):
        response = client.get(URL)
    assert response.status_code == 200


# --- Actions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "action", "transition", "says"),
    [
        ("hot", "stop", NodeTransition.STOPPING, "Stopping"),  # a degraded node may be stopped
        ("warm", "resume", NodeTransition.RESUMING, "Resuming"),
        ("warm", "release", NodeTransition.RELEASING, "Releasing"),
    ],
)
def test_a_node_action_changes_the_node_and_records_who(
    world, client, staff, which, action, transition, says
):
    node = world[which]
    response = client.post(action_url("a100"), {"action": action, "node": node.pk})
    assert response.status_code == 302
    assert response["Location"] == f"{URL}#node-{node.name}"
    node.refresh_from_db()
    assert node.transition == transition
    decision = ScalingDecision.objects.order_by("-id").first()
    assert (decision.action, decision.node, decision.ok) == (action, node, True)
    assert decision.decided_by == staff and decision.reason == f"by {staff.email}"
    assert messages_of(response)[0].startswith(f"{says} {node.name}")
    page = client.get(URL).content.decode()
    assert f'data-transition="{transition}"' in node_block(page, node.name)


def test_rent_a_node_from_the_page(world, client, staff):
    before = Node.objects.filter(pool=world["l4"]).count()
    response = client.post(action_url("l4"), {"action": "rent"})
    assert response.status_code == 302
    node = Node.objects.filter(pool=world["l4"]).order_by("-id").first()
    assert Node.objects.filter(pool=world["l4"]).count() == before + 1
    assert node.transition == NodeTransition.RENTING
    decision = ScalingDecision.objects.get(pool=world["l4"])
    assert (decision.action, decision.node, decision.decided_by) == ("rent", node, staff)
    assert messages_of(response) == [f"Renting {node.name}: hot in about 10 min."]


def test_a_refused_action_is_a_message_and_a_failed_decision(world, client, staff):
    warm = world["warm"]
    response = client.post(action_url("a100"), {"action": "stop", "node": warm.pk})
    assert response.status_code == 302
    assert messages_of(response) == [f"{warm.name}: The node is warm now."]
    decision = ScalingDecision.objects.order_by("-id").first()
    assert (decision.ok, decision.decided_by, decision.error) == (
        False,
        staff,
        "The node is warm now.",
    )
    warm.refresh_from_db()
    assert (warm.state, warm.transition) == (NodeState.WARM, "")


def test_a_provider_refusal_is_a_message(staff, client):
    managed_pool("a100", provider_config={"rent_failure_rate": 1})
    response = client.post(action_url("a100"), {"action": "rent"})
    assert response.status_code == 302
    [message] = messages_of(response)
    assert message.startswith("No node rented: ") and "capacity" in message
    assert not Node.objects.exists()
    assert ScalingDecision.objects.get().ok is False


@pytest.mark.parametrize(
    "data",
    [
        {"action": "scale", "node": "1"},
        {"action": "stop"},  # a node action without a node
        {"action": "stop", "node": "abc"},
        {"action": "rent", "node": "1"},
        {},
    ],
)
def test_a_bad_form_is_a_message_not_an_error(world, client, data):
    decisions = ScalingDecision.objects.count()
    response = client.post(action_url("a100"), data)
    assert response.status_code == 302 and response["Location"] == f"{URL}#pool-a100"
    assert messages_of(response) == ["Nothing done: that action is not available here."]
    assert ScalingDecision.objects.count() == decisions


def test_unknown_pools_and_nodes_and_another_pools_node_are_404s(world, client):
    decisions = ScalingDecision.objects.count()
    other = world["other"]  # a hot node of l4
    assert client.post(action_url("a100"), {"action": "stop", "node": other.pk}).status_code == 404
    assert client.post(action_url("a100"), {"action": "stop", "node": 999999}).status_code == 404
    assert client.post(action_url("nope"), {"action": "rent"}).status_code == 404
    make_pool("unmanaged")
    assert client.post(action_url("unmanaged"), {"action": "rent"}).status_code == 404
    imported = Node.objects.create(pool=world["a100"], name="imported-1")  # not managed
    response = client.post(action_url("a100"), {"action": "stop", "node": imported.pk})
    assert response.status_code == 404
    assert client.get(action_url("a100")).status_code == 405
    other.refresh_from_db()
    assert (other.state, other.transition) == (NodeState.HOT, "")
    assert ScalingDecision.objects.count() == decisions
