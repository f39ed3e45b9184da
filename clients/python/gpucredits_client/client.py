"""The HTTP client. Every call the client makes is listed in `OPERATIONS` (method, path, query
and header parameters): a test checks each against /api/schema/."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from gpucredits_client.errors import (
    APIError,
    TransportError,
    WaitTimeout,
    error_for,
)
from gpucredits_client.models import (
    AIModel,
    Balance,
    Job,
    JobPage,
    Organization,
    Quotas,
    Quote,
    Usage,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "gpucredits-client/0.1"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as in the OpenAPI schema, with {placeholders}
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()


OPERATIONS: dict[str, Operation] = {
    "organization": Operation("GET", "/api/v1/organization/"),
    "models": Operation("GET", "/api/v1/models/"),
    "balance": Operation("GET", "/api/v1/balance/"),
    "quotas": Operation("GET", "/api/v1/quotas/"),
    "usage": Operation("GET", "/api/v1/usage/", query=("start", "end", "group_by")),
    "generation_create": Operation("POST", "/api/v1/generations/", headers=("Idempotency-Key",)),
    "generation_list": Operation(
        "GET", "/api/v1/generations/", query=("cursor", "page_size", "status", "model")
    ),
    "generation_get": Operation("GET", "/api/v1/generations/{id}/"),
    "generation_cancel": Operation("POST", "/api/v1/generations/{id}/cancel/"),
    # SPEC §7 endpoints; a server without them answers 404 (NotFound).
    "generation_quote": Operation("POST", "/api/v1/generations/quote/"),
    "usage_event_create": Operation("POST", "/api/v1/usage-events/"),
}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Client:
    """GPU Credits API v1.

    Retries connection errors, timeouts, 5xx and 429 up to `max_retries` times with exponential
    backoff and jitter, honouring `Retry-After` (a wait longer than `max_retry_wait` is not
    waited: the typed error is raised with its `retry_after`). A POST that takes an
    Idempotency-Key gets one (a random UUID unless given) and every retry of it sends the same
    key, so a retried submission never creates a second job.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_retry_wait: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_wait = max_retry_wait
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            }
        )
        self._sleep = time.sleep

    # --- plumbing ---------------------------------------------------------------------------
    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base / 2 + random.uniform(0, base / 2)

    def request(
        self,
        operation: str,
        *,
        path_params: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Call one of OPERATIONS; returns the parsed JSON body or raises a typed error."""
        op = OPERATIONS[operation]
        url = self.base_url + op.path.format(**(path_params or {}))
        params = {k: v for k, v in (query or {}).items() if v is not None}
        unknown = set(params) - set(op.query)
        if unknown:
            raise ValueError(f"{operation} takes no query parameter {sorted(unknown)}")
        headers: dict[str, str] = {}
        if "Idempotency-Key" in op.headers:
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    op.method,
                    url,
                    params=params or None,
                    json=json,
                    headers=headers,
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.max_retries:
                    raise TransportError(f"{op.method} {op.path}: {exc}") from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400:
                return response.json() if response.content else None
            error = self._error(response)
            retryable = response.status_code in RETRY_STATUSES
            if (
                not retryable
                or attempt >= self.max_retries
                or (error.retry_after or 0) > self.max_retry_wait
            ):
                raise error
            self._sleep(self._delay(attempt, error.retry_after))
            attempt += 1

    @staticmethod
    def _error(response: requests.Response) -> APIError:
        try:
            body = response.json()
        except ValueError:
            body = None
        return error_for(
            response.status_code,
            body,
            retry_after=_retry_after(response.headers.get("Retry-After")),
            reason=response.reason or "",
        )

    # --- resources --------------------------------------------------------------------------
    def organization(self) -> Organization:
        return Organization.from_dict(self.request("organization"))

    def models(self) -> list[AIModel]:
        return [AIModel.from_dict(m) for m in self.request("models")]

    def balance(self) -> Balance:
        return Balance.from_dict(self.request("balance"))

    def quotas(self) -> Quotas:
        return Quotas.from_dict(self.request("quotas"))

    def usage(
        self, *, start: str | None = None, end: str | None = None, group_by: str | None = None
    ) -> Usage:
        """Spend and counts; `start`/`end` are ISO dates, `group_by` `day` or `model`."""
        return Usage.from_dict(
            self.request("usage", query={"start": start, "end": end, "group_by": group_by})
        )

    def submit(
        self,
        model: str,
        params: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit a generation (202: queued). Pass your own `idempotency_key` to make a later
        re-submission (after a crash of your process) return the same job."""
        body = {"model": model, "params": dict(params)}
        return Job.from_dict(
            self.request("generation_create", json=body, idempotency_key=idempotency_key)
        )

    def quote(self, model: str, params: Mapping[str, Any]) -> Quote:
        """The price of a submission, holding nothing."""
        body = {"model": model, "params": dict(params)}
        return Quote.from_dict(self.request("generation_quote", json=body))

    def generation(self, generation_id: str) -> Job:
        return Job.from_dict(self.request("generation_get", path_params={"id": generation_id}))

    def generations(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        query = {"status": status, "model": model, "page_size": page_size, "cursor": cursor}
        return JobPage.from_dict(self.request("generation_list", query=query))

    def iter_generations(self, **filters: Any) -> Iterator[Job]:
        """Every job matching the filters, newest first, following the cursor."""
        cursor = None
        while True:
            page = self.generations(cursor=cursor, **filters)
            yield from page.results
            cursor = page.next_cursor
            if cursor is None:
                return

    def cancel(self, generation_id: str) -> Job:
        return Job.from_dict(self.request("generation_cancel", path_params={"id": generation_id}))

    def usage_events(self, events: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Record metered usage events (SPEC §7), 1 to 100 in one all-or-nothing batch. Each
        event carries its own idempotency key as `id` (CloudEvents-like: `id`, `type` = the
        meter's slug, `time`, `quantity`), so sending a batch again charges nothing twice."""
        return self.request("usage_event_create", json={"events": [dict(e) for e in events]})

    def wait(
        self, generation_id: str, timeout: float = 300.0, *, poll_interval: float = 0.5
    ) -> Job:
        """Poll until the generation is succeeded, failed or cancelled and return it (check
        `job.status`); raises WaitTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.generation(generation_id)
            if job.is_final:
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(generation_id, job.status, timeout)
            self._sleep(min(interval, remaining))
            interval = min(interval * 1.5, 5.0)
