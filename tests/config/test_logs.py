"""Structured logs (config/logs.py): the request id in and out of every request, one access line
per request with its organization, the context on every line (JSON and text), carried through
Celery's task headers — and, end to end, one generation's request id in the web's access line
(gunicorn) and in the worker's line for that job (a real Celery worker), both JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts import services as account_services
from config import logs
from generations.models import Job
from tests.config.helpers import bearer
from tests.factories import make_ai_model, make_org

# A real Celery worker process on this test's database (tests/generations/conftest.py).
from tests.generations.conftest import purge_queues, start_worker, wait_for, worker_env  # noqa: F401


@pytest.fixture
def log_lines():
    """The JSON lines logged while the test runs (through the same filter and formatter as the
    LOGGING setting's handler), as dicts."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "gpucredits.access"]


# --- The request id and the access line -----------------------------------------------------


def test_a_sane_incoming_request_id_is_kept_returned_and_logged(client, log_lines):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a:01")

    assert response["X-Request-ID"] == "lb-7f3a:01"
    [line] = access_lines(log_lines())
    assert line["request_id"] == "lb-7f3a:01"
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["status"] == response.status_code
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    assert line["message"].startswith(f"GET /healthz {response.status_code} ")
    assert line["level"] == "INFO" and line["time"]
    assert "organization" not in line  # anonymous: unknown, so absent


@pytest.mark.parametrize(
    "incoming",
    [None, "", "   ", "x" * 201, "bad\u00e9id", "tab\there", "new\nline"],
    ids=["absent", "empty", "blank", "too-long", "non-ascii", "tab", "newline"],
)
def test_an_absent_or_insane_request_id_is_replaced_by_a_new_one(client, log_lines, incoming):
    headers = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}

    response = client.get("/healthz", **headers)

    issued = response["X-Request-ID"]
    assert issued != incoming and len(issued) == 32 and int(issued, 16) >= 0
    [line] = access_lines(log_lines())
    assert line["request_id"] == issued


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz")["X-Request-ID"] for _ in range(3)}

    assert len(ids) == 3


def test_errors_and_unknown_urls_carry_the_request_id_too(client, log_lines):
    response = client.get("/api/v1/no-such-endpoint/", HTTP_X_REQUEST_ID="req-404")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-404"
    [line] = access_lines(log_lines())
    assert (line["status"], line["request_id"]) == (404, "req-404")


def test_the_access_line_has_no_query_string_and_no_control_characters(client, log_lines):
    client.get("/no-such-page%0Aforged line/", {"token": "s3cret"}, HTTP_X_REQUEST_ID="r1")

    [line] = access_lines(log_lines())
    assert line["path"] == "/no-such-page?forged line/"
    assert "s3cret" not in json.dumps(log_lines())


@pytest.mark.django_db
def test_an_api_request_logs_its_organization_and_never_the_key(client, log_lines):
    org = make_org(slug="obs-acme", plan="studio")
    key = account_services.api_key_create(organization=org, name="k", actor=None)[1]

    response = client.get("/api/v1/models/", HTTP_X_REQUEST_ID="req-org", **bearer(key))

    assert response.status_code == 200
    [line] = access_lines(log_lines())
    assert line["organization"] == "obs-acme"
    assert line["request_id"] == "req-org"
    assert key not in json.dumps(log_lines())


@pytest.mark.django_db
def test_a_browser_session_logs_its_organization(client, log_lines):
    org = make_org(slug="obs-session", plan="studio")
    client.force_login(org.memberships.get().user)

    client.get("/healthz", HTTP_X_REQUEST_ID="req-session")

    [line] = access_lines(log_lines())
    assert line["organization"] == "obs-session"


def test_lines_logged_during_a_request_carry_its_id_and_none_after(rf, log_lines):
    def view(request):
        logging.getLogger("tests.inside").info("inside the view")
        from django.http import HttpResponse

        return HttpResponse("ok")

    logs.RequestLogMiddleware(view)(rf.get("/x", HTTP_X_REQUEST_ID="req-inside"))
    logging.getLogger("tests.after").info("after the request")

    by_logger = {line["logger"]: line for line in log_lines()}
    assert by_logger["tests.inside"]["request_id"] == "req-inside"
    assert "request_id" not in by_logger["tests.after"]
    assert logs.context_get() == {}


# --- Formats ----------------------------------------------------------------------------------


def record(message: str = "hello", **extra) -> logging.LogRecord:
    made = logging.LogRecord("tests.fmt", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_the_json_format_writes_known_context_fields_and_omits_unknown_ones():
    with logs.bound(request_id="r-1", job_id="j-1"):
        line = record()
        logs.ContextFilter().filter(line)

    data = json.loads(logs.JsonFormatter().format(line))
    assert data["message"] == "hello"
    assert data["level"] == "WARNING" and data["logger"] == "tests.fmt"
    assert (data["request_id"], data["job_id"]) == ("r-1", "j-1")
    assert "organization" not in data and "task_id" not in data


def test_the_text_format_appends_the_known_context_after_the_message():
    with logs.bound(request_id="r-2", organization="acme"):
        line = record("text line")
        logs.ContextFilter().filter(line)

    text = logs.TextFormatter().format(line)
    assert text.endswith("WARNING tests.fmt: text line [request_id=r-2 organization=acme]")
    assert logs.TextFormatter().format(record("bare")).endswith("tests.fmt: bare")


def test_log_format_must_be_json_or_text():
    assert logs.logging_config(fmt="json", level="INFO")["formatters"]["main"]["()"] == (
        "config.logs.JsonFormatter"
    )
    with pytest.raises(ImproperlyConfigured):
        logs.logging_config(fmt="yaml", level="INFO")


def test_text_is_the_default_format_here_and_json_in_production():
    assert settings.LOG_FORMAT == "text"
    env = {**os.environ, "SECRET_KEY": "x" * 50, "DJANGO_SETTINGS_MODULE": ""}
    env.pop("LOG_FORMAT", None)
    done = subprocess.run(
        [sys.executable, "-c",
         "from config.settings import production as p; print(p.LOG_FORMAT, "
         "p.LOGGING['formatters']['main']['()'])"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["json", "config.logs.JsonFormatter"]


# --- Through Celery's headers ------------------------------------------------------------------


def test_publishing_carries_the_request_id_and_organization_into_the_task_headers():
    headers: dict = {}
    with logs.bound(request_id="r-pub", organization="acme", job_id="j", task_id="t"):
        logs.celery_before_publish(headers=headers)

    assert headers == {logs.TASK_HEADER: {"request_id": "r-pub", "organization": "acme"}}


def test_a_task_runs_with_the_carried_context_and_its_id_then_leaves_none(log_lines):
    task = SimpleNamespace(request=SimpleNamespace(**{logs.TASK_HEADER: {"request_id": "r-t"}}))

    logs.celery_task_prerun(task_id="task-1", task=task)
    logs.task_context_bind(job_id="job-1")  # what the task body adds
    logging.getLogger("tests.task").info("in the task")
    logs.celery_task_postrun(task_id="task-1", task=task)
    logging.getLogger("tests.task").info("after the task")

    inside, after = log_lines()
    assert (inside["request_id"], inside["task_id"], inside["job_id"]) == ("r-t", "task-1", "job-1")
    assert not {"request_id", "task_id", "job_id"} & set(after)


def test_a_task_binding_outside_a_task_binds_nothing():
    logs.task_context_bind(job_id="direct-call")

    assert logs.context_get() == {}


def test_a_task_published_without_context_runs_with_its_task_id_only():
    headers: dict = {}
    logs.celery_before_publish(headers=headers)  # e.g. beat: nothing known
    assert headers == {}

    logs.celery_task_prerun(task_id="task-2", task=SimpleNamespace(request=SimpleNamespace()))
    try:
        assert logs.context_get() == {"task_id": "task-2"}
    finally:
        logs.celery_task_postrun(task_id="task-2")
    assert logs.context_get() == {}


# --- End to end: gunicorn + a real Celery worker, JSON lines -----------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json_lines(path: Path) -> list[dict]:
    found = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            data = json.loads(raw)
        except ValueError:
            continue  # gunicorn's and Celery's banners are not ours
        if isinstance(data, dict):
            found.append(data)
    return found


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), {"body": error.read()[:500].decode()}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_generation_request_id_is_in_the_web_line_and_the_worker_line(
    worker_env,  # noqa: F811
    start_worker,  # noqa: F811
    purge_queues,  # noqa: F811
    tmp_path,
):
    org = make_org(slug="obs-e2e", plan="studio")
    make_ai_model(credits="4")
    key = account_services.api_key_create(organization=org, name="k", actor=None)[1]
    start_worker(queues="gpu.a100", LOG_FORMAT="json")
    port = _free_port()
    web_log = tmp_path / "web.log"
    with web_log.open("wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "-w", "1",
             "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"],
            cwd=settings.BASE_DIR, env={**worker_env, "LOG_FORMAT": "json"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    request_id = f"e2e-{uuid.uuid4().hex}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, web_log.read_text()[-3000:]
            assert time.monotonic() < deadline, web_log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5):
                    break
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)

        status, headers, body = _post(
            f"{base}/api/v1/generations/",
            {"model": "sdxl", "params": {"prompt": "a traced cat"}},
            {"Authorization": f"Bearer {key}", "X-Request-ID": request_id},
        )
        assert status == 202, body
        assert headers["X-Request-ID"] == request_id
        job_id = body["id"]
        wait_for(
            lambda: Job.objects.filter(pk=job_id, status="succeeded").exists(),
            timeout=60,
            message="the job to succeed",
        )
        worker_log = tmp_path / "worker.log"
        worker_lines = wait_for(
            lambda: [
                line
                for line in _json_lines(worker_log)
                if line.get("job_id") == job_id and line.get("request_id") == request_id
            ],
            timeout=30,
            message="the worker's line for the job",
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    [web_line] = [
        line
        for line in _json_lines(web_log)
        if line.get("logger") == "gpucredits.access" and line.get("request_id") == request_id
    ]
    assert web_line["method"] == "POST"
    assert web_line["path"] == "/api/v1/generations/"
    assert web_line["status"] == 202
    assert web_line["organization"] == "obs-e2e"
    # The worker's lines for the job: same request id, the job's organization, the task id;
    # Celery's own "succeeded" line among them.
    for line in worker_lines:
        assert line["organization"] == "obs-e2e"
        assert line["task_id"]
    assert any("succeeded" in line["message"] for line in worker_lines), worker_lines
    assert key not in web_log.read_text() + worker_log.read_text()
