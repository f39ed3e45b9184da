"""OpenTelemetry tracing, off by default: with OTEL_ENABLED=true (and the `[otel]` extra
installed) Django requests, Celery tasks (publish and run) and psycopg queries become spans.

Nothing imports opentelemetry unless tracing is on (tests/config/test_tracing.py checks).
Started by config/wsgi.py and config/asgi.py for the web (before the middleware is loaded) and
by config/celery_app.py in each worker process. The exporter is the standard
OTEL_TRACES_EXPORTER: `otlp` (default; OTEL_EXPORTER_OTLP_ENDPOINT etc., HTTP/protobuf),
`console` or `none`; OTEL_SERVICE_NAME names the service (default gpu-credits-<role>).
docs/operations.md, "Logs and traces".
"""

from __future__ import annotations

import os
from typing import Any

REQUEST_ID_ATTRIBUTE = "gpucredits.request_id"
_started: dict[str, Any] = {}


def tracing_enabled() -> bool:
    from django.conf import settings

    return bool(getattr(settings, "OTEL_ENABLED", False))


def _exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "none":
        return None
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("OTEL_TRACES_EXPORTER must be otlp, console or none.")


def _response_hook(span, request, response) -> None:
    """The request's id (config/logs.py) on its server span: from a trace to its log lines."""
    request_id = getattr(request, "request_id", None)
    if request_id and span is not None and span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


def tracing_start(*, role: str, exporter: Any = None) -> Any:
    """Start tracing in this process (once) if OTEL_ENABLED; returns the tracer provider, or
    None when tracing is off. `exporter`: a span exporter to use instead of
    OTEL_TRACES_EXPORTER's (tests pass an in-memory one; spans are then exported at once)."""
    if not tracing_enabled():
        return None
    if "provider" in _started:
        return _started["provider"]
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = f"gpu-credits-{role}"
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip() or "otlp"
        chosen = _exporter(name)
        if chosen is not None:
            processor = SimpleSpanProcessor if name == "console" else BatchSpanProcessor
            provider.add_span_processor(processor(chosen))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider, response_hook=_response_hook)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(
        tracer_provider=provider, enable_commenter=False, skip_dep_check=True
    )
    _started["provider"] = provider
    return provider
