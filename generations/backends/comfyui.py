"""ComfyUI over HTTP: `POST /prompt`, then poll `GET /history/{prompt_id}` until it is done.

Nodes come from settings.GENERATIONS_COMFYUI_NODES, per pool: {"a100": {"a100-node-1":
"http://10.0.0.5:8188"}}. `pick_node` takes the least-loaded reachable node of the pool (its
`GET /queue`, with a short timeout), round-robin among equals and when none answers.

`backend_config` keys:
- `workflow`: a ComfyUI workflow in API format whose string values may hold placeholders,
  `{{prompt}}`, `{{seed}}` or any other param, plus `{{job_id}}`, `{{model}}` and
  `{{checkpoint}}`. A value that is exactly one placeholder takes the param's value with its
  type (`"{{steps}}"` → 30); inside a longer string it is formatted in. Without a `workflow`,
  a standard txt2img graph (checkpoint → CLIP text encode → KSampler → VAE decode → SaveImage
  as node "9") uses `prompt`, `negative_prompt`, `seed`, `steps`, `cfg`, `width`, `height`,
  `sampler_name`, `scheduler`, `denoise`, `batch_size` and `checkpoint`. A workflow's
  `filename_prefix` must hold `{{job_id}}`: ComfyUI answers an identical graph from its cache
  with the earlier job's file.
- `defaults`: values for placeholders the params leave out (else the built-in defaults; a
  missing `seed` is derived from the job id, so a retry draws the same image).
- `checkpoint`, `output_type` (default "image"), `image_base_url` (where the node's output
  folder is published; else image URLs point at the node's `/view`),
  `customer_fault_exceptions` (exception class names that make an execution error the
  customer's fault, added to PromptRejected / ContentRejected / NSFWContentDetected),
  `max_attempts`, `backoff_s`, `backoff_max_s`, `connect_timeout_s`, `read_timeout_s`,
  `poll_max_s`, `lost_check_s` (override the GENERATIONS_COMFYUI_* settings).

Every HTTP call has a timeout. Transient failures (connection errors, timeouts, 429 and 5xx)
are retried with exponential backoff and jitter, up to `max_attempts` per call; the whole run is
bounded by the request's `timeout_s` (then the prompt is removed from the node's queue, or
interrupted if it is running, and the run fails with `timeout`). The POST carries a prompt_id
chosen here, and before re-posting after an ambiguous failure the node is asked whether it
already has it, so a retry never queues the work twice.

Errors: validation errors (`400` with node_errors) that concern only inputs filled from the
customer's params → `invalid_params`, the customer's fault; any other rejected workflow →
`invalid_workflow`. An execution error → `gpu_failure`, or `rejected_prompt` (the customer's
fault) when the node's exception is a content rejection.
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings

from generations.backends import BackendError, RunRequest, RunResult

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CUSTOMER_FAULT_EXCEPTIONS = frozenset({"PromptRejected", "ContentRejected", "NSFWContentDetected"})
DEFAULT_CHECKPOINT = "sd_xl_base_1.0.safetensors"
DEFAULTS = {
    "negative_prompt": "",
    "steps": 20,
    "cfg": 7.0,
    "width": 1024,
    "height": 1024,
    "sampler_name": "euler",
    "scheduler": "normal",
    "denoise": 1.0,
    "batch_size": 1,
}
# ComfyUI's default graph, in API format.
DEFAULT_WORKFLOW = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": "{{seed}}",
            "steps": "{{steps}}",
            "cfg": "{{cfg}}",
            "sampler_name": "{{sampler_name}}",
            "scheduler": "{{scheduler}}",
            "denoise": "{{denoise}}",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}"},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 1]}},
    "7": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "{{negative_prompt}}", "clip": ["4", 1]},
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "{{job_id}}", "images": ["8", 0]},
    },
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_local = threading.local()
_round_robin: dict[str, itertools.count] = {}
_round_robin_lock = threading.Lock()


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


class _DeadlineExceeded(Exception):
    pass


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


# --- Workflow ---------------------------------------------------------------------------------


def build_workflow(request: RunRequest) -> tuple[dict, dict[tuple[str, str], str], dict]:
    """(workflow with the placeholders filled, {(node_id, input): param} for the inputs filled
    from the customer's params, the values used)."""
    config = request.backend_config
    template = config.get("workflow") or DEFAULT_WORKFLOW
    if not isinstance(template, dict) or not all(
        isinstance(node, dict) and isinstance(node.get("inputs", {}), dict)
        for node in template.values()
    ):
        raise BackendError(
            "The model's ComfyUI workflow is not a workflow in API format.", code="bad_workflow"
        )
    defaults = config.get("defaults") or {}
    values = {
        **DEFAULTS,
        "checkpoint": config.get("checkpoint", DEFAULT_CHECKPOINT),
        **(defaults if isinstance(defaults, dict) else {}),
        **request.params,
        "job_id": request.job_id,
        "model": request.model_slug,
    }
    if "seed" not in values:
        values["seed"] = zlib.crc32(request.job_id.encode())
    from_params = set(request.params)
    missing: set[str] = set()

    def fill(value, used: set[str]):
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value)
            if whole:
                name = whole.group(1)
                used.add(name)
                if name not in values:
                    missing.add(name)
                    return value
                return values[name]

            def one(match):
                name = match.group(1)
                used.add(name)
                if name not in values:
                    missing.add(name)
                    return match.group(0)
                return str(values[name])

            return _PLACEHOLDER.sub(one, value)
        if isinstance(value, list):
            return [fill(v, used) for v in value]
        if isinstance(value, dict):
            return {k: fill(v, used) for k, v in value.items()}
        return value

    workflow = copy.deepcopy(template)
    user_inputs: dict[tuple[str, str], str] = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs", {})
        for name, value in list(inputs.items()):
            used: set[str] = set()
            inputs[name] = fill(value, used)
            customer = sorted(used & from_params)
            if customer:
                user_inputs[(str(node_id), name)] = ", ".join(customer)
    if missing:
        raise BackendError(
            f"The model's ComfyUI workflow has placeholders with no value: {sorted(missing)}.",
            code="bad_workflow",
        )
    return workflow, user_inputs, values


# --- Backend ----------------------------------------------------------------------------------


class ComfyUIBackend:
    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session
        self._sleep = sleep

    @property
    def session(self) -> requests.Session:
        return self._session or _thread_session()

    # --- Nodes --------------------------------------------------------------------------------

    @staticmethod
    def nodes(pool_slug: str) -> dict[str, str]:
        configured = getattr(settings, "GENERATIONS_COMFYUI_NODES", {}) or {}
        nodes = configured.get(pool_slug) or {}
        if not isinstance(nodes, dict):
            raise BackendError(
                f"GENERATIONS_COMFYUI_NODES[{pool_slug!r}] must map node names to URLs.",
                code="no_nodes",
            )
        return {str(name): str(url) for name, url in nodes.items()}

    def pick_node(self, request: RunRequest) -> str:
        nodes = self.nodes(request.pool_slug)
        if not nodes:
            raise BackendError(
                f"No ComfyUI nodes are configured for pool {request.pool_slug!r}.",
                code="no_nodes",
            )
        names = sorted(nodes)
        with _round_robin_lock:
            counter = _round_robin.setdefault(request.pool_slug, itertools.count())
            turn = next(counter) % len(names)
        order = names[turn:] + names[:turn]
        if len(order) == 1:
            return order[0]
        opts = Options.of(request.backend_config)
        with ThreadPoolExecutor(max_workers=min(8, len(order))) as pool:
            loads = list(pool.map(lambda name: self._load(nodes[name], opts), order))
        reachable = [(load, i) for i, load in enumerate(loads) if load is not None]
        if not reachable:
            logger.warning(
                "No ComfyUI node of pool %s answered GET /queue; picking %s in turn",
                request.pool_slug,
                order[0],
            )
            return order[0]
        return order[min(reachable)[1]]

    def _load(self, base: str, opts: Options) -> int | None:
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

    # --- Run ----------------------------------------------------------------------------------

    def run(self, request: RunRequest, *, node: str) -> RunResult:
        nodes = self.nodes(request.pool_slug)
        if node not in nodes:
            raise BackendError(
                f"GPU node {node} is not configured for pool {request.pool_slug}.",
                code="unknown_node",
                node=node,
            )
        base = nodes[node].rstrip("/")
        opts = Options.of(request.backend_config)
        deadline = time.monotonic() + request.timeout_s
        workflow, user_inputs, values = build_workflow(request)
        prompt_id = str(uuid.uuid4())
        try:
            self._submit(base, node, prompt_id, workflow, user_inputs, request, deadline, opts)
            entry = self._wait(base, node, prompt_id, deadline, opts)
        except _DeadlineExceeded:
            self._cancel(base, node, prompt_id, opts)
            raise BackendError(
                f"Timed out after {request.timeout_s}s on GPU node {node}.",
                code="timeout",
                node=node,
            ) from None
        return self._result(entry, base, node, prompt_id, values, request)

    def _submit(self, base, node, prompt_id, workflow, user_inputs, request, deadline, opts):
        body = {
            "prompt": workflow,
            "prompt_id": prompt_id,
            "client_id": f"gpu-credits-{request.job_id}",
            "extra_data": {"job_id": request.job_id, "model": request.model_slug},
        }
        resp = self._call(
            "POST",
            base,
            "/prompt",
            node=node,
            deadline=deadline,
            opts=opts,
            json=body,
            # A lost answer may hide an accepted prompt: ask before posting it again.
            before_retry=lambda: self._knows(base, prompt_id, opts) is True,
        )
        if resp is None:
            logger.info("GPU node %s had prompt %s already; not posted again", node, prompt_id)
            return
        if resp.status_code == 200:
            data = self._json(resp, node, "POST /prompt")
            if data.get("prompt_id") not in (None, prompt_id):
                raise BackendError(
                    f"GPU node {node} answered with another prompt id.",
                    code="bad_response",
                    node=node,
                )
            logger.info(
                "Job %s: prompt %s queued on GPU node %s (%s)",
                request.job_id,
                prompt_id,
                node,
                redact(base),
            )
            return
        if resp.status_code == 400:
            self._rejected(resp, node, user_inputs)
        raise BackendError(
            f"GPU node {node} answered HTTP {resp.status_code} to POST /prompt.",
            code="comfyui_http_error",
            node=node,
        )

    def _rejected(self, resp, node: str, user_inputs: dict[tuple[str, str], str]):
        try:
            data = resp.json()
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        error = data.get("error")
        node_errors = data.get("node_errors") or {}
        problems: list[tuple[str, str | None, str]] = []
        if isinstance(node_errors, dict):
            for node_id, entry in node_errors.items():
                for e in (entry or {}).get("errors") or []:
                    extra = e.get("extra_info") or {}
                    text = str(e.get("message", "invalid"))
                    if e.get("details"):
                        text += f" ({e['details']})"
                    problems.append((str(node_id), extra.get("input_name"), text))
        summary = error.get("message") if isinstance(error, dict) else str(error or "")
        logger.warning(
            "GPU node %s rejected a workflow: %s %s", node, summary, [p[2] for p in problems]
        )
        if problems and all((nid, name) in user_inputs for nid, name, _ in problems):
            details = "; ".join(
                f"{user_inputs[(nid, name)]}: {text}" for nid, name, text in problems
            )
            raise BackendError(
                f"The model rejected the parameters: {details}.",
                code="invalid_params",
                customer_fault=True,
                node=node,
            )
        raise BackendError(
            f"GPU node {node} rejected the model's workflow: {summary or 'invalid prompt'}.",
            code="invalid_workflow",
            node=node,
        )

    def _wait(self, base, node, prompt_id, deadline, opts) -> dict:
        interval = opts.poll_min_s
        next_lost_check = time.monotonic() + opts.lost_check_s
        path = f"/history/{prompt_id}"
        while True:
            entry = self._history(base, node, path, prompt_id, deadline, opts)
            if entry is not None:
                return entry
            now = time.monotonic()
            if now >= next_lost_check:
                # A node restarted meanwhile forgets its queue: do not wait for the deadline.
                if self._knows(base, prompt_id, opts, history=False) is False:
                    entry = self._history(base, node, path, prompt_id, deadline, opts)
                    if entry is not None:
                        return entry
                    raise BackendError(
                        f"GPU node {node} lost the prompt (restarted?).",
                        code="prompt_lost",
                        node=node,
                    )
                next_lost_check = now + opts.lost_check_s
            pause = min(interval, deadline - now)
            if pause <= 0:
                raise _DeadlineExceeded
            self._sleep(pause)
            interval = min(interval * 1.5, opts.poll_max_s)

    def _history(self, base, node, path, prompt_id, deadline, opts) -> dict | None:
        resp = self._call("GET", base, path, node=node, deadline=deadline, opts=opts)
        if resp.status_code != 200:
            raise BackendError(
                f"GPU node {node} answered HTTP {resp.status_code} to GET /history.",
                code="comfyui_http_error",
                node=node,
            )
        data = self._json(resp, node, "GET /history")
        entry = data.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def _knows(
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

    def _cancel(self, base: str, node: str, prompt_id: str, opts: Options) -> None:
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

    def _call(
        self,
        method: str,
        base: str,
        path: str,
        *,
        node: str,
        deadline: float,
        opts: Options,
        json=None,
        before_retry: Callable[[], bool] | None = None,
    ) -> requests.Response | None:
        """One HTTP call, transient failures retried with exponential backoff and jitter.
        Returns the response (not 429/5xx), or None when `before_retry` says the work is
        already done. Raises BackendError(node_unavailable) after max_attempts and
        _DeadlineExceeded when the run's deadline comes first."""
        url = base + path
        problem = ""
        for attempt in range(1, opts.max_attempts + 1):
            if attempt > 1 and before_retry is not None and before_retry():
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _DeadlineExceeded
            timeout = (min(opts.connect_timeout_s, remaining), min(opts.read_timeout_s, remaining))
            retry_after = 0.0
            try:
                resp = self.session.request(method, url, json=json, timeout=timeout)
            except requests.Timeout:
                problem = "timed out"
            except requests.ConnectionError as exc:
                problem = f"connection failed ({type(exc).__name__})"
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
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                resp.close()
            if attempt == opts.max_attempts:
                break
            delay = min(opts.backoff_max_s, opts.backoff_s * 2 ** (attempt - 1))
            delay = max(random.uniform(delay / 2, delay), min(retry_after, opts.backoff_max_s))
            if time.monotonic() + delay >= deadline:
                raise _DeadlineExceeded
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
            self._sleep(delay)
        raise BackendError(
            f"GPU node {node} is unavailable: {method} {path} failed {opts.max_attempts} times"
            f" ({problem}).",
            code="node_unavailable",
            node=node,
        )

    @staticmethod
    def _json(resp: requests.Response, node: str, what: str) -> dict:
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

    # --- Result -------------------------------------------------------------------------------

    def _result(self, entry, base, node, prompt_id, values, request) -> RunResult:
        config = request.backend_config
        status = entry.get("status") or {}
        messages: dict[str, dict] = {}
        for message in status.get("messages") or []:
            if isinstance(message, (list, tuple)) and len(message) == 2:
                event, data = message
                messages[str(event)] = data if isinstance(data, dict) else {}
        failed = status.get("status_str") == "error" or (
            "execution_error" in messages or "execution_interrupted" in messages
        )
        if failed:
            error = self._execution_error(messages, node, config)
            # When the GPU really worked on it (the node's clock), for the run's record.
            error.started_at = _timestamp(messages.get("execution_start"))
            error.finished_at = _timestamp(
                messages.get("execution_error") or messages.get("execution_interrupted")
            )
            raise error
        if status and not status.get("completed", True):
            raise BackendError(
                f"GPU node {node} did not complete the prompt.", code="gpu_failure", node=node
            )

        images = []
        outputs = entry.get("outputs") or {}
        for node_id in sorted(outputs, key=str):
            for key in ("images", "gifs", "videos", "audio"):  # SaveAudio's files: "audio"
                for item in (outputs[node_id] or {}).get(key) or []:
                    if isinstance(item, dict) and item.get("filename"):
                        images.append(self._image(item, base, config))
        saved = [i for i in images if i["type"] == "output"]
        images = saved or images
        started = _timestamp(messages.get("execution_start"))
        finished = _timestamp(messages.get("execution_success"))
        if started and finished and finished < started:
            started = finished = None
        logger.info(
            "Job %s: prompt %s succeeded on GPU node %s (%d output(s))",
            request.job_id,
            prompt_id,
            node,
            len(images),
        )
        return RunResult(
            output={
                "type": config.get("output_type", "image"),
                "url": images[0]["url"] if images else "",
                "images": images,
                "prompt_id": prompt_id,
                "seed": values.get("seed"),
            },
            node=node,
            started_at=started,
            finished_at=finished,
            meta={"prompt_id": prompt_id, "node_url": redact(base)},
        )

    @staticmethod
    def _image(item: dict, base: str, config: dict) -> dict:
        filename = str(item["filename"])
        subfolder = str(item.get("subfolder") or "")
        kind = str(item.get("type") or "output")
        published = config.get("image_base_url")
        if published:
            path = f"{subfolder.strip('/')}/{filename}" if subfolder else filename
            url = f"{str(published).rstrip('/')}/{path}"
        else:
            query = urlencode({"filename": filename, "subfolder": subfolder, "type": kind})
            url = f"{redact(base)}/view?{query}"
        return {"filename": filename, "subfolder": subfolder, "type": kind, "url": url}

    @staticmethod
    def _execution_error(messages: dict, node: str, config: dict) -> BackendError:
        if "execution_error" in messages:
            error = messages["execution_error"]
            exc_type = str(error.get("exception_type") or "")
            text = str(error.get("exception_message") or "").strip()[:500]
            fault_types = CUSTOMER_FAULT_EXCEPTIONS | set(
                config.get("customer_fault_exceptions") or ()
            )
            if exc_type.rsplit(".", 1)[-1] in fault_types:
                return BackendError(
                    text or "The model refused this prompt.",
                    code="rejected_prompt",
                    customer_fault=True,
                    node=node,
                )
            where = error.get("node_type") or "the workflow"
            return BackendError(
                f"GPU error on node {node} in {where}: {exc_type or 'error'}: {text}".rstrip(": "),
                code="gpu_failure",
                node=node,
            )
        if "execution_interrupted" in messages:
            return BackendError(
                f"The prompt was interrupted on GPU node {node}.",
                code="interrupted",
                node=node,
            )
        return BackendError(
            f"GPU node {node} reported an execution error.", code="gpu_failure", node=node
        )


def _timestamp(message: dict | None) -> datetime | None:
    if not message:
        return None
    value = message.get("timestamp")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
