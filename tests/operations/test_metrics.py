"""`GET /metrics` (spec §7, operations.metrics): Prometheus text from the database at scrape
time — values against the data each test creates, who may read it, and two gunicorn workers
answering the same numbers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from credits import ledger
from generations.models import Job
from infra_costs.fleet.signals import TIERS
from infra_costs.models import GpuRun, Node, PoolRate, UptimeInterval
from operations.metrics import exposition
from tests.factories import UserFactory, make_account, make_ai_model, make_pool
from tests.generations.conftest import database_url_of

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TOKEN = "s3cret-metrics-token"
H = timedelta(hours=1)


def samples(body: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) → value, for every sample of the exposition."""
    text = body.decode() if isinstance(body, bytes) else body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[("gpucredits_" + name, tuple(sorted(labels.items())))]


def names(parsed: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in parsed.items() if n == "gpucredits_" + name}


# --- Data ----------------------------------------------------------------------------------------


def queued(model, org, *, priority: int, waited: timedelta, now: datetime) -> Job:
    return Job.objects.create(
        organization=org,
        model=model,
        params_hash="h",
        status="queued",
        priority=priority,
        created_at=now - waited,
        enqueued_at=now - waited,
    )


def managed(pool, name: str, state: str, *, since=None, kind="", **fields) -> Node:
    return Node.objects.create(
        pool=pool,
        name=name,
        provider="simulated",
        state=state,
        billing_kind=kind if since else "",
        billing_since=since,
        **fields,
    )


def run(node: Node, start: datetime, end: datetime | None) -> GpuRun:
    return GpuRun.objects.create(
        external_id=f"run-{GpuRun.objects.count()}",
        model_slug="sdxl",
        pool=node.pool,
        node=node,
        started_at=start,
        finished_at=end,
        status="succeeded" if end else "running",
        source="live",
    )


def base_world(now: datetime) -> dict:
    """Two pools (a100 at 2.00/h, warm 0.50/h; l4 at 1.00/h), queued jobs in two tiers and jobs
    in other statuses, two open holds (10 + 5), a full capture (7) and a partial one (3 of 8)."""
    a100 = make_pool("a100", rate="2.00")
    PoolRate.objects.filter(pool=a100).update(warm_hourly_rate_usd=Decimal("0.50"))
    l4 = make_pool("l4", gpu_type="L4", rate="1.00")
    account = make_account(credits="100")
    org = account.organization
    model = make_ai_model("sdxl", pool=a100)

    queued(model, org, priority=3, waited=timedelta(seconds=40), now=now)  # high
    queued(model, org, priority=3, waited=timedelta(seconds=10), now=now)  # high
    queued(model, org, priority=5, waited=timedelta(seconds=90), now=now)  # normal
    for status in ("running", "succeeded", "succeeded", "failed"):
        Job.objects.create(
            organization=org, model=model, params_hash="h", status=status, created_at=now
        )

    for key, amount in [("open-1", "10"), ("open-2", "5"), ("full", "7"), ("part", "8")]:
        ledger.hold_create(account=account, amount=amount, key=key, now=now)
    holds = {h.key: h for h in account.holds.all()}
    ledger.hold_capture(hold=holds["full"], now=now)
    ledger.hold_capture(hold=holds["part"], amount="3", now=now)
    return {"a100": a100, "l4": l4}


def world(now: datetime) -> dict:
    """`base_world` plus managed nodes in every state (billed since various times), a node
    known from uptime only, and a finished and a running run in the last hour."""
    data = base_world(now)
    a100, l4 = data["a100"], data["l4"]
    hot = managed(a100, "a100-hot", "hot", since=now - H, kind="on_demand")
    managed(a100, "a100-serving", "serving", since=now - H / 2, kind="on_demand")
    managed(a100, "a100-warm", "warm", since=now - 4 * H, kind="warm")
    managed(a100, "a100-cold", "cold", transition="renting")
    managed(l4, "l4-hot", "hot", since=now - H, kind="on_demand", transition="stopping",
            health="degraded")  # fmt: skip
    static = Node.objects.create(pool=a100, name="a100-static")  # not managed: no node metrics
    UptimeInterval.objects.create(
        node=static, pool=a100, started_at=now - 12 * H, ended_at=now - 10 * H
    )
    run(hot, now - H, now - H / 2)
    run(hot, now - H / 4, None)
    return data


# --- The collector ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_report_queues_nodes_busy_jobs_credits_and_cost_from_the_database():
    world(NOW)

    m = samples(exposition(now=NOW))

    # Queues: every pool × tier, zeros included.
    assert names(m, "queue_depth") == {
        (("pool", p), ("tier", t)): {("a100", "high"): 2, ("a100", "normal"): 1}.get((p, t), 0)
        for p in ("a100", "l4")
        for t in TIERS
    }
    assert value(m, "queue_oldest_wait_seconds", pool="a100", tier="high") == 40
    assert value(m, "queue_oldest_wait_seconds", pool="a100", tier="normal") == 90
    assert value(m, "queue_oldest_wait_seconds", pool="a100", tier="low") == 0
    # Managed nodes only; every state, zeros included.
    assert {lab: v for lab, v in names(m, "nodes").items() if v} == {
        (("pool", "a100"), ("state", "hot")): 1,
        (("pool", "a100"), ("state", "serving")): 1,
        (("pool", "a100"), ("state", "warm")): 1,
        (("pool", "a100"), ("state", "cold")): 1,
        (("pool", "l4"), ("state", "hot")): 1,
    }
    assert len(names(m, "nodes")) == 2 * 4
    assert value(m, "nodes_in_transition", pool="a100", transition="renting") == 1
    assert value(m, "nodes_in_transition", pool="l4", transition="stopping") == 1
    assert value(m, "nodes_in_transition", pool="a100", transition="stopping") == 0
    assert value(m, "node_health", pool="a100", health="ok") == 3  # the cold node is not leased
    assert value(m, "node_health", pool="l4", health="degraded") == 1
    assert value(m, "node_health", pool="l4", health="down") == 0
    # Last hour: runs 30 min + 15 min over 1 h (hot) + 30 min (serving) of running uptime.
    assert value(m, "gpu_busy_fraction", pool="a100") == 0.5
    assert value(m, "gpu_busy_fraction", pool="l4") == 0
    assert names(m, "jobs") == {
        (("status", "queued"),): 3,
        (("status", "running"),): 1,
        (("status", "succeeded"),): 2,
        (("status", "failed"),): 1,
        (("status", "cancelled"),): 0,
    }
    assert value(m, "credits_held") == 15
    assert value(m, "credits_captured_total") == 10  # 7 in full + 3 of 8
    # Today: static 2 h + hot 1 h + serving 0.5 h at 2.00, warm 4 h at 0.50; l4 1 h at 1.00.
    assert value(m, "cost_usd_today", pool="a100") == 9.0
    assert value(m, "cost_usd_today", pool="l4") == 1.0


@pytest.mark.django_db
def test_credits_captured_is_a_counter():
    body = exposition(now=NOW).decode()

    assert "# TYPE gpucredits_credits_captured_total counter" in body
    assert "\ngpucredits_credits_captured_total 0.0\n" in body
    assert [f.type for f in text_string_to_metric_families(body) if "captured" in f.name] == [
        "counter"
    ]


@pytest.mark.django_db
def test_a_scrape_is_a_handful_of_queries_whatever_the_data(django_assert_max_num_queries):
    world(NOW)
    for i in range(5):
        managed(make_pool(f"pool{i}"), f"extra-{i}", "hot", since=NOW - H, kind="on_demand")

    with django_assert_max_num_queries(7):
        exposition(now=NOW)


@pytest.mark.django_db
def test_metrics_without_any_pool_still_has_the_global_families():
    m = samples(exposition(now=NOW))

    assert value(m, "credits_held") == 0
    assert value(m, "jobs", status="queued") == 0
    assert names(m, "queue_depth") == {}


# --- The endpoint: who may read it -------------------------------------------------------------


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_anonymous_is_refused_with_a_bearer_challenge(client, metrics_token):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "gpucredits_" not in response.content.decode()
    assert len(queries) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer ", "Bearer s3cret-métrics", "Basic x"])
def test_a_wrong_token_is_refused(client, metrics_token, header):
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_token_auth_is_off_when_no_token_is_configured(client, settings):
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 401


@pytest.mark.django_db
def test_the_token_reads_metrics_and_writes_nothing(client, metrics_token):
    with time_machine.travel(NOW, tick=False):
        world(NOW)
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    m = samples(response.content)
    assert value(m, "queue_depth", pool="a100", tier="high") == 2
    assert value(m, "cost_usd_today", pool="a100") == 9.0
    writes = [q["sql"] for q in queries if re.search(r"\b(INSERT|UPDATE|DELETE)\b", q["sql"], re.I)]
    assert writes == []


@pytest.mark.django_db
def test_staff_reads_metrics_with_their_session(client):
    client.force_login(UserFactory(is_staff=True))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert "gpucredits_jobs" in response.content.decode()


@pytest.mark.django_db
def test_a_signed_in_customer_is_refused(client, metrics_token):
    client.force_login(UserFactory())

    response = client.get("/metrics")

    assert response.status_code == 403
    assert "gpucredits_" not in response.content.decode()


@pytest.mark.django_db
def test_only_get_is_allowed(client, metrics_token):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 405


# --- Two gunicorn workers answer the same numbers ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_agree_with_each_other_and_with_the_database(tmp_path):
    now = datetime.now(UTC)
    data = base_world(now)
    # Values that stay put while the test scrapes: unbilled managed nodes, and uptime spanning
    # the last hour on two a100 nodes, one of them running a job the whole time (busy 0.5).
    for i, state in enumerate(["hot", "serving", "warm", "cold"]):
        managed(data["a100"], f"a100-{i}", state)
    managed(data["l4"], "l4-down", "hot", health="down")
    for i in range(2):
        node = Node.objects.create(pool=data["a100"], name=f"a100-static-{i}")
        UptimeInterval.objects.create(
            node=node, pool=data["a100"], started_at=now - 3 * H, ended_at=now + 3 * H
        )
    run(node, now - 2 * H, None)
    truth = samples(exposition())
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "METRICS_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "gunicorn.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "-w", "2",
         "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
        cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)

        assert _get(f"{base}/metrics")[0] == 401
        assert _get(f"{base}/metrics", "wrong")[0] == 401
        scrapes = []
        for _ in range(10):
            status, body = _get(f"{base}/metrics", TOKEN)
            assert status == 200, body[:500]
            scrapes.append(samples(body))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()

    # Every scrape equals the in-process read of the same rows, except the queue waits, which
    # grow with the clock (between the read and the last scrape).
    waits = "gpucredits_queue_oldest_wait_seconds"
    steady = {k: v for k, v in truth.items() if k[0] != waits}
    elapsed = (datetime.now(UTC) - now).total_seconds()
    for scrape in scrapes:
        assert {k: v for k, v in scrape.items() if k[0] != waits} == steady
        for key, v in truth.items():
            if key[0] == waits and v:
                assert v <= scrape[key] <= v + elapsed + 1
            elif key[0] == waits:
                assert scrape[key] == 0
    # And the rows themselves.
    m = scrapes[-1]
    assert value(m, "jobs", status="queued") == Job.objects.filter(status="queued").count() == 3
    assert value(m, "queue_depth", pool="a100", tier="high") == 2
    assert value(m, "queue_depth", pool="a100", tier="normal") == 1
    assert value(m, "queue_oldest_wait_seconds", pool="a100", tier="normal") >= 90
    for state in ("hot", "serving", "warm", "cold"):
        assert value(m, "nodes", pool="a100", state=state) == 1
    assert value(m, "node_health", pool="l4", health="down") == 1
    assert value(m, "credits_held") == 15
    assert value(m, "credits_captured_total") == 10
    assert value(m, "gpu_busy_fraction", pool="a100") == 0.5
    assert value(m, "gpu_busy_fraction", pool="l4") == 0
