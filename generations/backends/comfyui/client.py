"""HTTP to a ComfyUI node: one keep-alive session per thread, the timeouts and retry settings
(`Options`), one call with transient failures retried (exponential backoff and jitter, bounded
by the run's deadline), and the quick probes (`GET /queue`, `GET /history`) that never retry."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from django.conf import settings

from generations.backends import BackendError

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Transient answers that say the request was not taken (to be made again as it is).
NOT_TAKEN_STATUS = frozenset({408, 429, 503})

_local = threading.local()


def _thread_session() -> requests.Session:
    """One keep-alive session per thread (a Session is not meant to be shared by threads)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers["User-Agent"] = "gpu-credits-comfyui/1"
    return session


def redact(url: str) -> str:
    """The URL without credentials or query, for logs, errors and results."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class DeadlineExceeded(Exception):
    """The run's deadline came before the node answered."""


@dataclass(frozen=True)
class Options:
    max_attempts: int
    backoff_s: float
    backoff_max_s: float
    connect_timeout_s: float
    read_timeout_s: float
    probe_timeout_s: float
    poll_min_s: float
    poll_max_s: float
    lost_check_s: float

    @classmethod
    def of(cls, config: dict) -> Options:
        def get(key: str, setting: str, default: float) -> float:
            value = config.get(key, getattr(settings, setting, default))
            return max(0.0, float(value))

        return cls(
            max_attempts=max(1, int(get("max_attempts", "GENERATIONS_COMFYUI_MAX_ATTEMPTS", 5))),
            backoff_s=get("backoff_s", "GENERATIONS_COMFYUI_BACKOFF_S", 0.25),
            backoff_max_s=float(config.get("backoff_max_s", 5.0)),
            connect_timeout_s=get(
                "connect_timeout_s", "GENERATIONS_COMFYUI_CONNECT_TIMEOUT_S", 3.0
            ),
            read_timeout_s=get("read_timeout_s", "GENERATIONS_COMFYUI_READ_TIMEOUT_S", 10.0),
            probe_timeout_s=get("probe_timeout_s", "GENERATIONS_COMFYUI_PROBE_TIMEOUT_S", 0.5),
            poll_min_s=0.05,
            poll_max_s=max(0.05, float(config.get("poll_max_s", 1.0))),
            lost_check_s=max(0.5, float(config.get("lost_check_s", 10.0))),
        )


def queue_load(base: str, opts: Options) -> int | None:
    """Prompts running + pending on the node, or None when it does not answer quickly."""
    try:
        resp = requests.get(
            f"{base.rstrip('/')}/queue",
            timeout=(opts.probe_timeout_s, opts.probe_timeout_s),
        )
        if resp.status_code != 200:
            return None
        data = resp.json()
        return len(data.get("queue_running") or []) + len(data.get("queue_pending") or [])
    except (requests.RequestException, ValueError, AttributeError, TypeError):
        return None


def read_json(resp: requests.Response, node: str, what: str) -> dict:
    """The answer's JSON object; BackendError(bad_response) when it is not one."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise BackendError(
            f"GPU node {node} answered {what} with something other than a JSON object.",
            code="bad_response",
            node=node,
        )
    return data


class NodeClient:
    """The HTTP calls to the nodes, on the given session (else one per thread); `sleep` waits
    between attempts (tests pass a fake)."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self.sleep = sleep

    @property
    def session(self) -> requests.Session:
        return self._session or _thread_session()

    def call(
        self,
        method: str,
        base: str,
        path: str,
        *,
        node: str,
        deadline: float,
        opts: Options,
        json=None,
        ask: Callable[[], bool | None] | None = None,
    ) -> requests.Response | None:
        """One HTTP call, transient failures retried with exponential backoff and jitter.
        Returns the response (not 429/5xx), or None when `ask` says the node already has the
        work. Raises BackendError(node_unavailable) after max_attempts and DeadlineExceeded
        when the run's deadline comes first.

        `ask` (for a call that must not be made twice, POST /prompt): after a failure that may
        have reached the node (no answer, a timeout after sending, a 5xx other than 503), the
        call is made again only once `ask` says the node does not have the work (False). While
        `ask` cannot tell (None: the node does not answer the checks) it is asked again, with
        backoff, until the deadline: the node is never given the work twice."""
        url = base + path
        problem = ""
        for attempt in range(1, opts.max_attempts + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded
            timeout = (min(opts.connect_timeout_s, remaining), min(opts.read_timeout_s, remaining))
            retry_after = 0.0
            try:
                resp = self.session.request(method, url, json=json, timeout=timeout)
            except requests.Timeout as exc:
                problem = "timed out"
                reached = not isinstance(exc, requests.ConnectTimeout)
            except requests.ConnectionError as exc:
                problem = f"connection failed ({type(exc).__name__})"
                reached = _may_have_reached(exc)
            except requests.RequestException as exc:
                raise BackendError(
                    f"Bad request to GPU node {node}: {type(exc).__name__}.",
                    code="comfyui_http_error",
                    node=node,
                ) from None
            else:
                if resp.status_code not in TRANSIENT_STATUS:
                    return resp
                problem = f"HTTP {resp.status_code}"
                # 408, 429 and 503 say the request was not taken; a 500/502/504 may hide work
                # the node (or a proxy in front of it) accepted.
                reached = resp.status_code not in NOT_TAKEN_STATUS
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                resp.close()
            if attempt == opts.max_attempts and not (reached and ask is not None):
                break
            delay = min(opts.backoff_max_s, opts.backoff_s * 2 ** (attempt - 1))
            delay = max(random.uniform(delay / 2, delay), min(retry_after, opts.backoff_max_s))
            if time.monotonic() + delay >= deadline:
                raise DeadlineExceeded
            logger.warning(
                "GPU node %s: %s %s %s (attempt %d of %d); retrying in %.2fs",
                node,
                method,
                path,
                problem,
                attempt,
                opts.max_attempts,
                delay,
            )
            self.sleep(delay)
            if reached and ask is not None:
                if self._settle(
                    ask, node=node, what=f"{method} {path}", deadline=deadline, opts=opts
                ):
                    return None
                if attempt == opts.max_attempts:
                    break
        raise BackendError(
            f"GPU node {node} is unavailable: {method} {path} failed {opts.max_attempts} times"
            f" ({problem}).",
            code="node_unavailable",
            node=node,
        )

    def _settle(self, ask, *, node: str, what: str, deadline: float, opts: Options) -> bool:
        """Whether the node has the work of a call whose answer was lost: `ask` until it says
        yes (True) or no (False); while it cannot tell, ask again with backoff until the
        deadline (DeadlineExceeded)."""
        delay = opts.backoff_s
        while True:
            known = ask()
            if known is not None:
                if known:
                    logger.info("GPU node %s had the work of %s already", node, what)
                return known
            delay = min(opts.backoff_max_s, max(delay * 2, 0.05))
            pause = min(random.uniform(delay / 2, delay), deadline - time.monotonic())
            if pause <= 0:
                raise DeadlineExceeded
            logger.warning(
                "GPU node %s: %s got no answer and the node cannot say whether it has the"
                " work; asking again in %.2fs (never sent twice)",
                node,
                what,
                pause,
            )
            self.sleep(pause)

    def knows(
        self, base: str, prompt_id: str, opts: Options, *, history: bool = True
    ) -> bool | None:
        """Whether the node has the prompt queued, running or (history=True) done; None when
        it cannot tell (not answering). One quick try each."""
        timeout = (opts.probe_timeout_s, max(opts.probe_timeout_s, 2.0))
        try:
            if history:
                resp = self.session.get(f"{base}/history/{prompt_id}", timeout=timeout)
                if resp.status_code == 200 and prompt_id in (resp.json() or {}):
                    return True
            resp = self.session.get(f"{base}/queue", timeout=timeout)
            if resp.status_code != 200:
                return None
            data = resp.json()
            items = (data.get("queue_running") or []) + (data.get("queue_pending") or [])
            return any(len(item) > 1 and item[1] == prompt_id for item in items)
        except (requests.RequestException, ValueError, AttributeError, TypeError):
            return None

    def cancel(self, base: str, node: str, prompt_id: str, opts: Options) -> None:
        """Best effort: drop the prompt from the node's queue, or interrupt it if running."""
        timeout = (opts.probe_timeout_s, max(opts.probe_timeout_s, 2.0))
        try:
            self.session.post(f"{base}/queue", json={"delete": [prompt_id]}, timeout=timeout)
            resp = self.session.get(f"{base}/queue", timeout=timeout)
            running = resp.json().get("queue_running") or [] if resp.status_code == 200 else []
            if any(len(item) > 1 and item[1] == prompt_id for item in running):
                self.session.post(
                    f"{base}/interrupt", json={"prompt_id": prompt_id}, timeout=timeout
                )
        except (requests.RequestException, ValueError, AttributeError, TypeError):
            logger.warning("Could not cancel prompt %s on GPU node %s", prompt_id, node)


def _may_have_reached(exc: requests.ConnectionError) -> bool:
    """Whether a failed connection may have delivered the request: not when the connection was
    never made (refused, unknown host, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)  # NewConnectionError too


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
