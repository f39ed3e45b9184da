"""Where staff see and tune alerts: the landing page /staff/ lists open alerts (critical first)
and the last 10 resolved (newest first); the admin edits rule thresholds (validated for each
rule's direction) and lists alerts read-only with filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from accounts.models import User
from operations.models import Alert, AlertRule, AlertState, RuleKey
from tests.factories import make_org

pytestmark = pytest.mark.django_db

HOME = "/staff/"
NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture
def staff_client(client):
    client.force_login(
        User.objects.create_user(email="ops@example.com", password="x", is_staff=True)
    )
    return client


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser(email="root@example.com", password="x"))
    return client


def alert(key: str, subject: str, message: str, *, severity="warning", opened=NOW, resolved=None):
    return Alert.objects.create(
        rule=AlertRule.objects.get(key=key),
        subject=subject,
        severity=severity,
        state=AlertState.RESOLVED if resolved else AlertState.OPEN,
        value=1,
        message=message,
        opened_at=opened,
        last_seen_at=resolved or opened,
        resolved_at=resolved,
    )


def test_the_landing_page_is_served_by_operations_under_the_same_name():
    assert reverse("staff:home") == HOME
    from django.urls import resolve

    assert resolve(HOME).func.__module__ == "operations.views.staff_home"


def test_staff_only(client):
    assert client.get(HOME).status_code == 302
    client.force_login(make_org(slug="acme").memberships.get().user)
    assert client.get(HOME).status_code == 404


def test_landing_lists_open_alerts_critical_first_with_since(staff_client):
    alert("queue_depth", "pool a100", "Pool a100: 11 jobs queued", opened=NOW)
    alert(
        "node_health",
        "node a100-sim-2",
        "Node a100-sim-2 (pool a100) is down",
        severity="critical",
        opened=NOW + timedelta(minutes=5),
    )
    html = staff_client.get(HOME).content.decode()
    section = html.split('data-testid="staff-rule-alerts"')[1].split("</section>")[0]
    assert 'data-testid="open-alert-count">2 open<' in section
    assert section.index("is down") < section.index("11 jobs queued")  # critical first
    down = section.split("is down")[0].rsplit("<li", 1)[1]
    assert "alert-error" in down and '<span class="badge badge-off">Critical</span>' in down
    queued = section.split("11 jobs queued")[0].rsplit("<li", 1)[1]
    assert "alert-warning" in queued and '<span class="badge badge-warn">Warning</span>' in queued
    assert "since" in section and "2 Mar 15:00 UTC" in section
    assert f'href="{reverse("admin:operations_alert_changelist")}"' in section
    assert 'data-testid="no-open-alerts"' not in section


def test_landing_lists_the_last_ten_resolved_newest_first(staff_client):
    for i in range(12):
        alert(
            "cost_per_day",
            f"pool p{i}",
            f"Pool p{i}: $25.00 spent today",
            opened=NOW,
            resolved=NOW + timedelta(minutes=i + 1),
        )
    html = staff_client.get(HOME).content.decode()
    assert 'data-testid="no-open-alerts"' in html
    resolved = html.split('data-testid="resolved-alerts"')[1].split("</ul>")[0]
    shown = [f"p{i}" for i in range(12) if f"Pool p{i}:" in resolved]
    assert shown == [f"p{i}" for i in range(2, 12)]
    assert resolved.index("Pool p11:") < resolved.index("Pool p2:")
    assert "open 11\xa0minutes" in resolved


def test_landing_without_alerts_still_renders_the_other_sections(staff_client):
    html = staff_client.get(HOME).content.decode()
    assert 'data-testid="no-open-alerts"' in html
    assert 'data-testid="resolved-alerts"' not in html
    for section in ("staff-alerts", "staff-costs", "staff-fleet", "staff-prices"):
        assert f'data-testid="{section}"' in html


def _rule_form(rule: AlertRule, **changes) -> dict:
    data = {
        "name": rule.name,
        "description": rule.description,
        "enabled": "on",
        "warning_threshold": rule.warning_threshold or "",
        "critical_threshold": rule.critical_threshold or "",
        "warning_window_s": rule.warning_window_s or "",
        "critical_window_s": rule.critical_window_s or "",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("key", "changes", "error_field"),
    [
        ("queue_depth", {"warning_threshold": "30", "critical_threshold": "10"}, "critical"),
        ("queue_depth", {"critical_threshold": "10"}, "critical"),  # equal: never warns
        ("cost_per_day", {"warning_threshold": ""}, "warning"),
        ("gpu_utilization", {"warning_threshold": "0.1", "critical_threshold": "0.2"}, "critical"),
        ("gpu_utilization", {"warning_threshold": "20"}, "warning"),  # a fraction, not %
        ("gpu_utilization", {"critical_window_s": ""}, "critical_window"),
        ("priority_wait", {"warning_threshold": "-1"}, "warning"),
    ],
)
def test_admin_refuses_thresholds_in_the_wrong_order(admin_client, key, changes, error_field):
    rule = AlertRule.objects.get(key=key)
    before = (rule.warning_threshold, rule.critical_threshold, rule.critical_window_s)
    url = reverse("admin:operations_alertrule_change", args=[rule.pk])
    response = admin_client.post(url, _rule_form(rule, **changes))
    assert response.status_code == 200
    assert f"field-{error_field}" in response.content.decode()
    assert response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert (rule.warning_threshold, rule.critical_threshold, rule.critical_window_s) == before


def test_admin_saves_valid_thresholds(admin_client):
    rule = AlertRule.objects.get(key=RuleKey.GPU_UTILIZATION)
    url = reverse("admin:operations_alertrule_change", args=[rule.pk])
    form = _rule_form(rule, warning_threshold="0.30", critical_threshold="0.05")
    form["warning_window_s"] = "1800"
    response = admin_client.post(url, form)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (str(rule.warning_threshold), str(rule.critical_threshold)) == ("0.300000", "0.050000")
    assert rule.warning_window_s == 1800
    # Node health has no thresholds to fill in.
    node = AlertRule.objects.get(key=RuleKey.NODE_HEALTH)
    url = reverse("admin:operations_alertrule_change", args=[node.pk])
    assert admin_client.post(url, _rule_form(node)).status_code == 302


def test_admin_rules_are_never_added_or_deleted_and_alerts_are_read_only(admin_client):
    assert admin_client.get(reverse("admin:operations_alertrule_add")).status_code == 403
    a = alert("queue_depth", "pool a100", "Pool a100: 11 jobs queued")
    assert admin_client.get(reverse("admin:operations_alert_add")).status_code == 403
    changelist = reverse("admin:operations_alert_changelist")
    for query in (
        "",
        "?state__exact=open",
        "?severity__exact=warning",
        f"?rule__id__exact={a.rule_id}",
    ):
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        assert "Pool a100: 11 jobs queued" in response.content.decode()
    html = admin_client.get(reverse("admin:operations_alert_change", args=[a.pk])).content.decode()
    assert 'name="_save"' not in html
