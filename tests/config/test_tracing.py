"""OpenTelemetry tracing (config/tracing.py): off by default — then nothing loads tracing or
instrumentation, in the web or around a task, and all works without the packages — and on with
OTEL_ENABLED=true, when a request makes a server span (console exporter). Each case runs in a
fresh interpreter, as a deployment would start."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

# The web application loaded as gunicorn loads it, a request through the whole middleware
# stack, the Celery app and its publish hook; prints the opentelemetry modules imported by then
# and the middleware. The URL needs no database (an unknown page, answered 404 to an anonymous
# caller). PROBE_BLOCK_OTEL: opentelemetry can't be imported at all (the extra not installed).
PROBE = """
import json, os, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(f"blocked: {name}")

if os.environ.get("PROBE_BLOCK_OTEL"):
    sys.meta_path.insert(0, Block())
import config.wsgi
from django.conf import settings
from django.test import Client
from config import logs
from config.celery_app import app

response = Client().get("/no-such-page/", HTTP_X_REQUEST_ID="trace-probe")
assert response.status_code == 404, response.status_code
logs.celery_before_publish(headers={})
modules = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print("PROBE " + json.dumps({"modules": modules, "middleware": settings.MIDDLEWARE}))
"""


def run_probe(**env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env_overrides}
    for name in ("OTEL_ENABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
        if name not in env_overrides:
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def probe_result(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE "))


def test_tracing_is_off_by_default_and_our_code_imports_no_opentelemetry():
    assert settings.OTEL_ENABLED is False

    result = probe_result(run_probe())

    # redis-py looks for the OpenTelemetry SDK's metrics when it is installed (its own optional
    # metrics); no tracing, no instrumentation, no tracing middleware is loaded.
    tracing = [
        m
        for m in result["modules"]
        if m.startswith(("opentelemetry.instrumentation", "opentelemetry.sdk.trace"))
        or m.startswith("opentelemetry.exporter")
    ]
    assert tracing == []
    assert not [m for m in result["middleware"] if "opentelemetry" in m]


def test_without_the_otel_packages_the_web_and_the_task_hooks_work():
    result = probe_result(run_probe(PROBE_BLOCK_OTEL="1"))

    assert result["modules"] == []


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.sdk") is None
    or importlib.util.find_spec("opentelemetry.instrumentation.django") is None,
    reason="the [otel] extra is not installed",
)
def test_with_tracing_on_a_request_makes_a_server_span():
    done = run_probe(
        OTEL_ENABLED="true", OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="probe-web"
    )

    result = probe_result(done)
    assert "opentelemetry.instrumentation.django" in result["modules"]
    assert any("opentelemetry" in m for m in result["middleware"])
    # The console exporter prints each span as a JSON object (several lines each).
    decoder, text, spans, at = json.JSONDecoder(), done.stdout, [], 0
    while (at := text.find("{", at)) != -1:
        try:
            span, end = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        spans.append(span)
        at = end
    server = [s for s in spans if s.get("kind") == "SpanKind.SERVER"]
    assert server, done.stdout[-3000:]
    assert server[0]["attributes"]["http.method"] == "GET" or (
        server[0]["attributes"].get("http.request.method") == "GET"
    )
    assert server[0]["resource"]["attributes"]["service.name"] == "probe-web"
    assert server[0]["attributes"]["gpucredits.request_id"] == "trace-probe"
