"""Alert rules (operations.alerts): each rule opens a warning, escalates to critical, resolves,
and emails staff once per opening and once per escalation — never again while an alert stays as
it is; evaluation reads stay a fixed number of queries however many pools there are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import IntegrityError, transaction

from accounts.models import User
from generations.models import Job, JobStatus
from infra_costs.models import GpuRun, Node, NodeHealth, UptimeInterval
from operations import tasks
from operations.alerts import services
from operations.models import Alert, AlertRule, AlertState, RuleKey, Severity
from tests.factories import make_ai_model, make_org, make_pool

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def eager_celery():
    """The email task runs in-process when the evaluation commits (no worker in these tests)."""
    from config.celery_app import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def staff():
    User.objects.create_user(email="zed@example.com", password="x", is_staff=True, is_active=False)
    User.objects.create_user(email="customer@example.com", password="x")
    return User.objects.create_user(email="ops@example.com", password="x", is_staff=True)


@pytest.fixture
def evaluate(django_capture_on_commit_callbacks, staff):
    """Evaluate at a time and run what the commit would run (the email task)."""

    def run(now: datetime) -> services.EvaluationSummary:
        with django_capture_on_commit_callbacks(execute=True):
            return services.alerts_evaluate(now=now)

    return run


@pytest.fixture
def pool():
    return make_pool("a100", rate="3.60")


def rule(key: str) -> AlertRule:
    return AlertRule.objects.get(key=key)


def subjects() -> dict[str, tuple[str, str]]:
    """Open alerts: subject → (severity, message)."""
    return {a.subject: (a.severity, a.message) for a in Alert.objects.filter(state=AlertState.OPEN)}


def subjects_sent() -> list[str]:
    return [m.subject for m in mail.outbox]


def queue(pool, n: int, *, priority: int = 5, enqueued_at: datetime = NOW) -> list[Job]:
    model = make_ai_model(f"m-{pool.slug}-{priority}-{Job.objects.count()}", pool=pool)
    org = make_org()
    return Job.objects.bulk_create(
        Job(
            organization=org,
            model=model,
            params={"prompt": "x"},
            params_hash=f"h{i}",
            status=JobStatus.QUEUED,
            priority=priority,
            created_at=enqueued_at,
            enqueued_at=enqueued_at,
        )
        for i in range(n)
    )


def test_the_five_rules_are_seeded_with_the_issue_thresholds():
    rules = {r.key: r for r in AlertRule.objects.all()}
    assert set(rules) == set(RuleKey.values)
    got = {
        k: (r.warning_threshold, r.critical_threshold, r.warning_window_s, r.critical_window_s)
        for k, r in rules.items()
    }
    assert got == {
        "queue_depth": (D(10), D(30), None, None),
        "priority_wait": (D(30), D(60), None, None),
        "node_health": (None, None, None, None),
        "gpu_utilization": (D("0.2"), D("0.1"), 3600, 7200),
        "cost_per_day": (D(20), D(30), None, None),
    }
    assert all(r.enabled for r in rules.values())


def test_queue_depth_opens_escalates_deescalates_and_resolves(evaluate, pool):
    jobs = queue(pool, 10)
    assert evaluate(NOW).opened == []  # 10 is not over 10

    jobs += queue(pool, 1)
    summary = evaluate(NOW)
    assert len(summary.opened) == 1
    assert subjects() == {"pool a100": (Severity.WARNING, "Pool a100: 11 jobs queued")}
    assert subjects_sent() == ["[warning] Pool a100: 11 jobs queued"]
    assert mail.outbox[0].to == ["ops@example.com"]  # active staff with an email only

    # Still over: no second email, the alert is only seen again.
    later = NOW + timedelta(minutes=1)
    assert evaluate(later).unchanged == summary.opened
    alert = Alert.objects.get()
    assert (alert.opened_at, alert.last_seen_at, alert.value) == (NOW, later, D(11))
    assert len(mail.outbox) == 1

    jobs += queue(pool, 23)
    assert evaluate(NOW + timedelta(minutes=2)).escalated == summary.opened
    assert subjects() == {"pool a100": (Severity.CRITICAL, "Pool a100: 34 jobs queued")}
    assert subjects_sent()[-1] == "[critical] Pool a100: 34 jobs queued"

    Job.objects.filter(pk__in=[j.pk for j in jobs[:20]]).update(status=JobStatus.RUNNING)
    assert evaluate(NOW + timedelta(minutes=3)).deescalated == summary.opened
    assert subjects() == {"pool a100": (Severity.WARNING, "Pool a100: 14 jobs queued")}
    assert len(mail.outbox) == 2  # de-escalation emails nobody

    Job.objects.filter(pk__in=[j.pk for j in jobs[:20]]).update(status=JobStatus.QUEUED)
    assert evaluate(NOW + timedelta(minutes=4)).escalated == summary.opened
    assert len(mail.outbox) == 3  # escalating again emails again

    Job.objects.update(status=JobStatus.SUCCEEDED)
    assert evaluate(NOW + timedelta(minutes=5)).resolved == summary.opened
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_at) == (AlertState.RESOLVED, NOW + timedelta(minutes=5))
    assert len(mail.outbox) == 3

    # Over again later: a new alert (the resolved one stays as history).
    queue(pool, 12)
    assert len(evaluate(NOW + timedelta(minutes=6)).opened) == 1
    assert Alert.objects.count() == 2 and len(mail.outbox) == 4


def test_priority_wait_counts_pro_and_above_only(evaluate, pool):
    queue(pool, 1, priority=5, enqueued_at=NOW - timedelta(minutes=10))  # normal tier: ignored
    assert evaluate(NOW).opened == []

    [pro] = queue(pool, 1, priority=3, enqueued_at=NOW - timedelta(seconds=45))
    opened = evaluate(NOW).opened
    assert subjects() == {
        "pool a100": (Severity.WARNING, "Pool a100: a priority job has waited 45 s")
    }
    assert evaluate(NOW + timedelta(seconds=5)).unchanged == opened

    assert evaluate(NOW + timedelta(seconds=20)).escalated == opened
    assert subjects()["pool a100"] == (
        Severity.CRITICAL,
        "Pool a100: a priority job has waited 65 s",
    )
    Job.objects.filter(pk=pro.pk).update(status=JobStatus.RUNNING)
    assert evaluate(NOW + timedelta(seconds=30)).resolved == opened
    assert subjects_sent() == [
        "[warning] Pool a100: a priority job has waited 45 s",
        "[critical] Pool a100: a priority job has waited 65 s",
    ]


def test_node_health_opens_per_managed_node(evaluate, pool):
    node = Node.objects.create(pool=pool, name="a100-sim-2", provider="simulated")
    Node.objects.create(pool=pool, name="imported-1", health=NodeHealth.DOWN)  # not managed
    assert evaluate(NOW).opened == []

    Node.objects.filter(pk=node.pk).update(health=NodeHealth.DEGRADED)
    opened = evaluate(NOW).opened
    assert subjects() == {
        "node a100-sim-2": (Severity.WARNING, "Node a100-sim-2 (pool a100) is degraded")
    }
    assert evaluate(NOW + timedelta(minutes=1)).unchanged == opened

    Node.objects.filter(pk=node.pk).update(health=NodeHealth.DOWN)
    assert evaluate(NOW + timedelta(minutes=2)).escalated == opened
    assert subjects_sent()[-1] == "[critical] Node a100-sim-2 (pool a100) is down"

    Node.objects.filter(pk=node.pk).update(health=NodeHealth.OK)
    assert evaluate(NOW + timedelta(minutes=3)).resolved == opened
    assert len(mail.outbox) == 2


def _run(node, start: datetime, minutes: float) -> GpuRun:
    return GpuRun.objects.create(
        external_id=f"run-{start.isoformat()}",
        model_slug="sdxl",
        pool=node.pool,
        node=node,
        started_at=start,
        finished_at=start + timedelta(minutes=minutes),
        status="succeeded",
        source="live",
    )


def test_gpu_utilization_judges_each_threshold_over_its_window(evaluate, pool):
    make_pool("l4")  # no uptime at all: never judged
    node = Node.objects.create(pool=pool, name="n1")
    UptimeInterval.objects.create(
        node=node, pool=pool, started_at=NOW - timedelta(hours=3), ended_at=NOW + timedelta(hours=1)
    )
    _run(node, NOW - timedelta(minutes=90), 10)
    _run(node, NOW - timedelta(minutes=30), 9)
    # Last hour 9/60 = 15 % (< 20 %: warning); last 2 h 19/120 = 15.8 % (not < 10 %).
    opened = evaluate(NOW).opened
    assert subjects() == {
        "pool a100": (Severity.WARNING, "Pool a100: GPUs 15 % busy over the last 1 h")
    }
    assert Alert.objects.get().value == D("0.15")

    # An hour later with no work: 2 h at 9/120 = 7.5 % < 10 %: critical.
    later = NOW + timedelta(hours=1)
    assert evaluate(later).escalated == opened
    assert subjects()["pool a100"] == (
        Severity.CRITICAL,
        "Pool a100: GPUs 8 % busy over the last 2 h",
    )

    _run(node, later - timedelta(minutes=50), 50)
    assert evaluate(later).resolved == opened
    assert subjects_sent() == [
        "[warning] Pool a100: GPUs 15 % busy over the last 1 h",
        "[critical] Pool a100: GPUs 8 % busy over the last 2 h",
    ]


def test_cost_per_day_counts_the_utc_day_so_far(evaluate, pool):
    node = Node.objects.create(pool=pool, name="n1")
    day = NOW.replace(hour=0)

    def up(start_h: int, end_h: int, base: datetime = day) -> None:
        UptimeInterval.objects.create(
            node=node,
            pool=pool,
            started_at=base + timedelta(hours=start_h),
            ended_at=base + timedelta(hours=end_h),
        )

    up(0, 5)  # 5 h × $3.60 = $18
    assert evaluate(NOW).opened == []
    up(5, 6)  # $21.60
    opened = evaluate(NOW).opened
    assert subjects() == {"pool a100": (Severity.WARNING, "Pool a100: $21.60 spent today")}
    up(6, 9)  # $32.40
    assert evaluate(NOW).escalated == opened
    assert Alert.objects.get().value == D("32.4")

    # The next UTC day starts from zero.
    assert evaluate(day + timedelta(days=1, minutes=30)).resolved == opened
    assert subjects_sent() == [
        "[warning] Pool a100: $21.60 spent today",
        "[critical] Pool a100: $32.40 spent today",
    ]


def test_thresholds_edited_in_the_rule_apply_at_the_next_evaluation(evaluate, pool):
    queue(pool, 8)
    assert evaluate(NOW).opened == []
    AlertRule.objects.filter(key=RuleKey.QUEUE_DEPTH).update(warning_threshold=5)
    assert len(evaluate(NOW).opened) == 1


def test_a_disabled_rule_opens_nothing_and_resolves_its_open_alerts(evaluate, pool):
    queue(pool, 40)
    opened = evaluate(NOW).opened
    AlertRule.objects.filter(key=RuleKey.QUEUE_DEPTH).update(enabled=False)
    assert evaluate(NOW + timedelta(minutes=1)).resolved == opened
    assert evaluate(NOW + timedelta(minutes=2)).opened == []


def test_a_rolled_back_evaluation_opens_and_emails_nothing(
    django_capture_on_commit_callbacks, staff, pool
):
    queue(pool, 40)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                services.alerts_evaluate(now=NOW)
                raise RuntimeError("after the evaluation")
        except RuntimeError:
            pass
    assert callbacks == [] and mail.outbox == [] and not Alert.objects.exists()


def test_each_alert_is_emailed_once_even_if_the_task_runs_twice(
    django_capture_on_commit_callbacks, staff, pool
):
    queue(pool, 40)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        summary = services.alerts_evaluate(now=NOW)
    assert len(callbacks) == 1 and mail.outbox == []
    assert tasks.notify_alerts.apply(args=[summary.opened]).get() == 1
    assert tasks.notify_alerts.apply(args=[summary.opened]).get() == 0  # a redelivery
    [message] = mail.outbox
    assert message.subject == "[critical] Pool a100: 40 jobs queued"
    assert "Pool a100: 40 jobs queued." in message.body
    assert "warning > 10, critical > 30 (queued jobs)" in message.body
    assert f"{django_settings.SITE_URL.rstrip('/')}/staff/" in message.body
    assert Alert.objects.get().notified_at is not None


def test_no_staff_email_means_no_email_and_the_alert_still_opens(
    django_capture_on_commit_callbacks, pool
):
    queue(pool, 40)
    with django_capture_on_commit_callbacks(execute=True):
        services.alerts_evaluate(now=NOW)
    assert mail.outbox == []
    assert Alert.objects.get().notified_at is None


def test_one_open_alert_per_rule_and_subject_in_the_database(pool):
    r = rule(RuleKey.QUEUE_DEPTH)
    fields = {"rule": r, "subject": "pool a100", "value": 1, "message": "m", "opened_at": NOW}
    Alert.objects.create(severity="warning", last_seen_at=NOW, **fields)
    Alert.objects.create(
        severity="warning", last_seen_at=NOW, state="resolved", resolved_at=NOW, **fields
    )  # resolved ones may repeat
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(severity="critical", last_seen_at=NOW, **fields)


# Savepoint, rule lock, pools, queues, nodes, busy over two windows, cost today, open alerts,
# then at most: insert, update, escalation reset, resolve, savepoint release.
QUERIES = 14


def _busy_fleet(n_pools: int) -> None:
    """n pools, each firing every rule (queue, priority wait, node, idle GPUs, cost)."""
    for i in range(n_pools):
        p = make_pool(f"p{i}")
        queue(p, 31, priority=1, enqueued_at=NOW - timedelta(minutes=5))
        managed = Node.objects.create(pool=p, name=f"p{i}-sim", provider="simulated", health="down")
        UptimeInterval.objects.create(
            node=managed, pool=p, started_at=NOW.replace(hour=0), ended_at=NOW
        )


@pytest.mark.parametrize("n_pools", [1, 4])
def test_evaluation_queries_do_not_grow_with_pools(
    django_assert_max_num_queries, django_capture_on_commit_callbacks, n_pools
):
    _busy_fleet(n_pools)
    with django_assert_max_num_queries(QUERIES), django_capture_on_commit_callbacks():
        first = services.alerts_evaluate(now=NOW)  # opens
    assert len(first.opened) == 5 * n_pools
    Node.objects.update(health="degraded")
    with django_assert_max_num_queries(QUERIES), django_capture_on_commit_callbacks():
        second = services.alerts_evaluate(now=NOW)  # de-escalates, touches
    assert len(second.deescalated) == n_pools
    Job.objects.update(status=JobStatus.RUNNING)
    with django_assert_max_num_queries(QUERIES), django_capture_on_commit_callbacks():
        third = services.alerts_evaluate(now=NOW + timedelta(minutes=1))  # resolves
    assert len(third.resolved) == 2 * n_pools


def test_the_beat_task_evaluates_now_and_is_scheduled_every_minute(pool, staff):
    entry = django_settings.CELERY_BEAT_SCHEDULE["operations-evaluate-alerts"]
    assert entry == {
        "task": "operations.tasks.evaluate_alerts",
        "schedule": 60.0,
        "options": {"expires": 55},
    }
    assert tasks.evaluate_alerts.acks_late is True
    queue(pool, 11)
    assert tasks.evaluate_alerts.apply().get()["opened"] == 1
    assert tasks.evaluate_alerts.apply().get() == {
        "opened": 0,
        "escalated": 0,
        "deescalated": 0,
        "unchanged": 1,
        "resolved": 0,
    }
