"""Structured logs: every line carries the context it is known in — `request_id`,
`organization`, `job_id`, `task_id` — across web → worker (docs/operations.md, "Logs and traces").

- `RequestLogMiddleware` (first in MIDDLEWARE) gives each request an id (a sane incoming
  `X-Request-ID`, else a new one), returns it in the `X-Request-ID` header, keeps it in a
  contextvar for the request, and writes one access line per request.
- `ContextFilter`, on the log handler, copies the context onto each record; `JsonFormatter`
  (LOG_FORMAT=json) and `TextFormatter` (LOG_FORMAT=text) write it.
- Celery (connected in config/celery_app.py): publishing copies `request_id` and `organization`
  into the task message's headers; the worker binds them, with the task id, around each task.
  Code that knows more (the job a task runs) adds it with `task_context_bind` (or `bound`).

Plumbing: imports no app, and nothing here logs bodies, headers or keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FIELDS = ("request_id", "organization", "job_id", "task_id")
FORMATS = ("json", "text")
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_MAX_LENGTH = 200
# The task message header that carries the context from the publisher to the worker.
TASK_HEADER = "gpucredits_log"
PATH_MAX_LENGTH = 500

access_logger = logging.getLogger("gpucredits.access")

_context: ContextVar[dict[str, str] | None] = ContextVar("gpucredits_log_context", default=None)
# The current request, for what is known only once the view ran (its organization).
_request: ContextVar[Any] = ContextVar("gpucredits_log_request", default=None)
# Tokens of the context bound for each running task (task_prerun → task_postrun).
_task_tokens: dict[str, Token] = {}


# --- The context ------------------------------------------------------------------------------


def context_get() -> dict[str, str]:
    """The known context fields (request_id, organization, job_id, task_id) of this thread or
    task; the organization of a request is read from the request once it has one."""
    context = dict(_context.get() or {})
    if "organization" not in context:
        organization = getattr(_request.get(), "organization", None)
        slug = getattr(organization, "slug", None)
        if slug:
            context["organization"] = slug
    return context


def context_bind(**fields: Any) -> Token:
    """Add fields to the context (None and "" are ignored); undo with `context_reset(token)`."""
    context = dict(_context.get() or {})
    context.update({k: str(v) for k, v in fields.items() if v is not None and v != ""})
    return _context.set(context)


def task_context_bind(**fields: Any) -> None:
    """Add fields to the running Celery task's context, until the task ends (task_postrun
    undoes it). Outside a task (a direct call) it does nothing, so nothing outlives the call."""
    if (_context.get() or {}).get("task_id"):
        context_bind(**fields)


def context_reset(token: Token) -> None:
    try:
        _context.reset(token)
    except ValueError:  # set in another context (a thread-pool worker): start clean instead
        _context.set(None)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = context_bind(**fields)
    try:
        yield
    finally:
        context_reset(token)


def request_id_sanitize(value: str | None) -> str:
    """An incoming request id if sane (printable ASCII, 1–200 characters), else a new one."""
    if value:
        value = value.strip()
        if 0 < len(value) <= REQUEST_ID_MAX_LENGTH and value.isascii() and value.isprintable():
            return value
    return uuid.uuid4().hex


# --- Records and formats ----------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Copies the known context onto each record (fields already on the record win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context_get().items():
            record.__dict__.setdefault(key, value)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context
    fields that are known and the record's extras (Django's request object is left out)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request", "server_time", "taskName"])
        super().__init__("%(levelname)s %(name)s %(message)s", **kwargs)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=… organization=… job_id=… task_id=…]`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        known = [f"{key}={record.__dict__[key]}" for key in FIELDS if record.__dict__.get(key)]
        if not known:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(known)}]{newline}{rest}"


def logging_config(*, fmt: str, level: str) -> dict:
    """The LOGGING setting: one stderr handler, the context filter, `fmt` json or text."""
    if fmt not in FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be one of: {', '.join(FORMATS)}.")
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "config.logs.ContextFilter"}},
        "formatters": {"main": {"()": f"config.logs.{formatter.__name__}"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }


# --- Web --------------------------------------------------------------------------------------


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class RequestLogMiddleware:
    """The request id (in, out and in the context) and one access line per request: method,
    path (no query string), status, duration, request id, organization."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_sanitize(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        started = time.perf_counter()
        token = _context.set({"request_id": request_id})
        request_token = _request.set(request)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            method, path = _printable(request.method, 16), _printable(request.path, PATH_MAX_LENGTH)
            access_logger.info(
                "%s %s %s %sms",
                method,
                path,
                response.status_code,
                duration_ms,
                extra={
                    "method": method,
                    "path": path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                },
            )
            return response
        finally:
            _request.reset(request_token)
            _context.reset(token)


# --- Celery (connected in config/celery_app.py) -----------------------------------------------


def celery_logging_setup(loglevel=None, **kwargs) -> None:
    """Workers and beat log as the web does (LOGGING), instead of Celery's own format; the
    level is LOG_LEVEL when set, else the worker's `-l`."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel and not os.environ.get("LOG_LEVEL"):
        logging.getLogger().setLevel(loglevel)


def celery_before_publish(headers=None, **kwargs) -> None:
    """The publisher's request id and organization travel in the task message's headers."""
    if headers is None:
        return
    context = {k: v for k, v in context_get().items() if k in ("request_id", "organization")}
    if context and TASK_HEADER not in headers:
        headers[TASK_HEADER] = context


def celery_task_prerun(task_id=None, task=None, **kwargs) -> None:
    carried = getattr(getattr(task, "request", None), TASK_HEADER, None)
    carried = carried if isinstance(carried, dict) else {}
    token = context_bind(
        request_id=carried.get("request_id"),
        organization=carried.get("organization"),
        task_id=task_id,
    )
    if task_id:
        _task_tokens[task_id] = token


def celery_task_postrun(task_id=None, **kwargs) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        context_reset(token)
