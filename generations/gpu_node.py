"""A simulated GPU node that speaks ComfyUI's HTTP API (`manage.py run_gpu_node`).

It lets the `comfyui` backend be exercised for real (tests, `make run` with GPU_NODES=1)
without a GPU. Like one ComfyUI process it validates the submitted workflow, queues it, runs
`workers` prompts at a time (a GPU runs one by default) and keeps the history:

- `POST /prompt` {"prompt": {...}, "client_id": "...", "extra_data": {...}, "prompt_id"?}
  → 200 {"prompt_id", "number", "node_errors"}; 400 {"error": {...}, "node_errors": {...}}
  for an invalid body or workflow, with ComfyUI's error shapes. A `prompt_id` chosen by the
  client (as ComfyUI accepts) makes a retried POST idempotent: the same id is queued once.
- `GET /history/{prompt_id}` → {} while queued or running, then
  {prompt_id: {"prompt": [number, id, workflow, extra_data, outputs], "outputs": {...},
  "status": {"status_str": "success"|"error", "completed", "messages"}, "meta": {...}}},
  the messages being ComfyUI's `execution_start` / `execution_cached` / `execution_success` |
  `execution_error` | `execution_interrupted` events with their millisecond timestamps.
- `GET /queue`, `GET /prompt`, `GET /system_stats` (node name and pool under "system" and
  "devices"), `GET /view?filename=` (a small PNG), `POST /queue` {"delete"|"clear"},
  `POST /interrupt` {"prompt_id"?}, `POST /history` {"delete"|"clear"}. Every route is also
  served under `/api`, as ComfyUI does.

Simulation: service time drawn log-normally around `mean_s`, a cold start when the node has
been idle, a failure rate. Prompt text containing `[fail]` fails (a GPU error, exception
`RuntimeError`) and `[reject]` is refused by the node's safety check (exception
`PromptRejected`: the customer's fault) — the same hooks as the simulated backend.
Fault injection for tests: `flaky_http_rate` answers that share of requests with
`flaky_http_status` (503) before handling them; `drop_response_rate` handles the request and
then closes the connection without answering (a lost response); `fault_routes` limits both to
some routes (e.g. "POST /prompt").
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import math
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_HISTORY = 10_000
VERSION = "gpu-credits-sim-1"

SAMPLERS = [
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_sde",
    "dpmpp_3m_sde",
    "ddim",
    "uni_pc",
    "lcm",
]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]

# The node classes this node knows: inputs (type, options) and output types, as ComfyUI's
# INPUT_TYPES / RETURN_TYPES. A type that is a list is a choice; links carry the upper-case
# types. Inputs marked optional may be omitted.
NODE_TYPES: dict[str, dict] = {
    "CheckpointLoaderSimple": {
        "inputs": {"ckpt_name": ("STRING", {})},
        "outputs": ("MODEL", "CLIP", "VAE"),
    },
    "CLIPTextEncode": {
        "inputs": {"text": ("STRING", {}), "clip": ("CLIP", {})},
        "outputs": ("CONDITIONING",),
    },
    "EmptyLatentImage": {
        "inputs": {
            "width": ("INT", {"min": 16, "max": 16384}),
            "height": ("INT", {"min": 16, "max": 16384}),
            "batch_size": ("INT", {"min": 1, "max": 64, "optional": True}),
        },
        "outputs": ("LATENT",),
    },
    "KSampler": {
        "inputs": {
            "model": ("MODEL", {}),
            "seed": ("INT", {"min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": ("INT", {"min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"min": 0.0, "max": 100.0}),
            "sampler_name": (SAMPLERS, {}),
            "scheduler": (SCHEDULERS, {}),
            "positive": ("CONDITIONING", {}),
            "negative": ("CONDITIONING", {}),
            "latent_image": ("LATENT", {}),
            "denoise": ("FLOAT", {"min": 0.0, "max": 1.0, "optional": True}),
        },
        "outputs": ("LATENT",),
    },
    "VAEDecode": {
        "inputs": {"samples": ("LATENT", {}), "vae": ("VAE", {})},
        "outputs": ("IMAGE",),
    },
    "SaveImage": {
        "inputs": {"images": ("IMAGE", {}), "filename_prefix": ("STRING", {"optional": True})},
        "outputs": (),
        "output_node": True,
    },
    "PreviewImage": {
        "inputs": {"images": ("IMAGE", {})},
        "outputs": (),
        "output_node": True,
    },
}
LINK_TYPES = {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE"}


class PromptRejected(Exception):
    """The node's safety check refused the prompt (the customer's fault)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


# --- Validation (ComfyUI's validate_prompt, for the node classes above) ----------------------


def validate_prompt(prompt) -> tuple[bool, dict | None, list[str], dict]:
    """(valid, error, output node ids to execute, node_errors), as ComfyUI's validate_prompt:
    a prompt is valid when at least one output node validates; node_errors lists the nodes
    with errors and the outputs that depend on them."""
    if not isinstance(prompt, dict) or not prompt:
        return (
            False,
            _error("invalid_prompt", "Prompt must be a non-empty object of nodes.", ""),
            [],
            {},
        )
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return (
                False,
                _error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
        if node["class_type"] not in NODE_TYPES:
            return (
                False,
                _error(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
    outputs = [nid for nid, n in prompt.items() if NODE_TYPES[n["class_type"]].get("output_node")]
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {}

    errors_by_node: dict[str, list[dict]] = {}
    reachable: dict[str, set[str]] = {}
    for output in outputs:
        seen: set[str] = set()
        _validate_node(prompt, output, errors_by_node, seen, ())
        reachable[output] = seen
    node_errors: dict[str, dict] = {}
    good: list[str] = []
    lines: list[str] = []
    for output in outputs:
        bad = [nid for nid in reachable[output] if errors_by_node.get(nid)]
        if not bad:
            good.append(output)
            continue
        for nid in sorted(bad):
            entry = node_errors.setdefault(
                nid,
                {
                    "errors": errors_by_node[nid],
                    "dependent_outputs": [],
                    "class_type": prompt[nid]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
            if len(entry["dependent_outputs"]) == 1:
                lines += [f"{e['message']}: {e['details']}" for e in errors_by_node[nid]]
    if not good:
        error = _error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", "\n".join(lines)
        )
        return False, error, [], node_errors
    return True, None, good, node_errors


def _validate_node(prompt, node_id, errors_by_node, seen, stack) -> None:
    if node_id in seen:
        return
    seen.add(node_id)
    node = prompt[node_id]
    spec = NODE_TYPES[node["class_type"]]
    inputs = node.get("inputs", {})
    errors: list[dict] = []
    errors_by_node[node_id] = errors
    if not isinstance(inputs, dict):
        errors.append(_error("invalid_inputs", "Node inputs must be an object", f"{node_id}"))
        return
    for name, (type_, options) in spec["inputs"].items():
        info = {"input_name": name}
        if name not in inputs:
            if not options.get("optional"):
                errors.append(
                    _error("required_input_missing", "Required input is missing", name, info)
                )
            continue
        value = inputs[name]
        if isinstance(value, list):
            if (
                len(value) != 2
                or not isinstance(value[0], str)
                or value[0] not in prompt
                or not isinstance(value[1], int)
            ):
                errors.append(
                    _error(
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name,
                        {**info, "received_value": value},
                    )
                )
                continue
            linked_id, slot = value
            returns = NODE_TYPES[prompt[linked_id]["class_type"]]["outputs"]
            received = returns[slot] if 0 <= slot < len(returns) else None
            if received != type_:
                errors.append(
                    _error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({type_})",
                        {**info, "received_type": received, "linked_node": value},
                    )
                )
                continue
            if linked_id in stack or linked_id == node_id:
                errors.append(_error("dependency_cycle", "Dependency cycle detected", name, info))
                continue
            _validate_node(prompt, linked_id, errors_by_node, seen, (*stack, node_id))
            continue
        problem = _check_value(name, value, type_, options)
        if isinstance(problem, dict):
            errors.append(problem)
        else:
            inputs[name] = problem  # converted, as ComfyUI does


def _check_value(name, value, type_, options):
    """The converted value, or an error dict."""
    info = {"input_name": name, "received_value": value}
    if isinstance(type_, list):
        if value not in type_:
            return _error(
                "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {type_}", info
            )
        return value
    if type_ in LINK_TYPES:
        return _error(
            "invalid_input_type",
            f"Failed to convert an input value to a {type_} value",
            f"{name}, {value}",
            info,
        )
    try:
        if type_ == "INT":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not an integer")
            value = int(value)
        elif type_ == "FLOAT":
            if isinstance(value, bool):
                raise ValueError("not a number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError("not finite")
        elif type_ == "STRING":
            if not isinstance(value, (str, int, float)):
                raise ValueError("not a string")
            value = str(value)
    except (TypeError, ValueError) as exc:
        return _error(
            "invalid_input_type",
            f"Failed to convert an input value to a {type_} value",
            f"{name}, {value}, {exc}",
            {**info, "exception_message": str(exc)},
        )
    if "min" in options and value < options["min"]:
        return _error(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {options['min']}",
            name,
            info,
        )
    if "max" in options and value > options["max"]:
        return _error(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {options['max']}",
            name,
            info,
        )
    return value


# --- The node -------------------------------------------------------------------------------


@dataclass
class NodeConfig:
    pool: str
    name: str = ""
    host: str = "127.0.0.1"
    port: int = 8188
    mean_s: float = 1.0
    sigma: float = 0.25
    failure_rate: float = 0.0
    cold_start_s: float = 0.0
    idle_before_cold_s: float = 300.0
    workers: int = 1
    # Fault injection (tests): answer this share of requests with flaky_http_status before
    # handling them; handle this share and close the connection without an answer.
    flaky_http_rate: float = 0.0
    flaky_http_status: int = 503
    drop_response_rate: float = 0.0
    # Only these routes ("POST /prompt", "GET /history/{id}", "GET /queue", ...) when given.
    fault_routes: tuple[str, ...] = ()
    random_seed: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or f"{self.pool}-node-1"
        for field_name in ("failure_rate", "flaky_http_rate", "drop_response_rate"):
            value = getattr(self, field_name)
            if not 0 <= value <= 1:
                raise ValueError(f"{field_name} must be between 0 and 1, not {value}")
        for field_name in ("mean_s", "sigma", "cold_start_s", "idle_before_cold_s"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{field_name} must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


class GpuNode:
    """The queue, the GPU worker threads and the history of one simulated node."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.rng = random.Random(config.random_seed)
        self._lock = threading.Condition()
        self._pending: list[tuple] = []  # heap of (number, seq, item)
        self._seq = itertools.count()
        self._number = 0
        self._running: dict[str, tuple] = {}
        self._interrupts: dict[str, threading.Event] = {}
        self._history: dict[str, dict] = {}
        self._images: dict[str, int] = {}  # filename → seed, for /view
        self._image_counter = itertools.count(1)
        self._idle_since: float | None = None  # None: never ran (cold)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats: Counter = Counter()  # requests by route, prompts by outcome (see count)
        self._stats_lock = threading.Lock()

    def count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    # Randomness is shared by HTTP threads and workers.
    def chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self.rng.random() < rate

    def start(self) -> None:
        for index in range(self.config.workers):
            thread = threading.Thread(
                target=self._work, name=f"{self.config.name}-gpu{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5) -> None:
        """Stop the workers; a prompt running is interrupted."""
        self._stopping.set()
        with self._lock:
            for event in self._interrupts.values():
                event.set()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)

    # --- API operations ----------------------------------------------------------------------

    def submit(self, body) -> tuple[int, dict]:
        if not isinstance(body, dict) or "prompt" not in body:
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return 400, {"error": error, "node_errors": {}}
        prompt = body["prompt"]
        prompt_id = body.get("prompt_id")
        valid_id = isinstance(prompt_id, str) and 0 < len(prompt_id) <= 128
        if prompt_id is not None and not valid_id:
            error = _error("invalid_prompt", "prompt_id must be a string of 1-128 characters")
            return 400, {"error": error, "node_errors": {}}
        extra_data = body.get("extra_data") or {}
        if not isinstance(extra_data, dict):
            error = _error("invalid_prompt", "extra_data must be an object")
            return 400, {"error": error, "node_errors": {}}
        extra_data = dict(extra_data)
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        with self._lock:
            known = self._find(prompt_id) if prompt_id else None
        if known is not None:  # a retried POST: queued once
            return 200, {"prompt_id": prompt_id, "number": known[0], "node_errors": {}}
        valid, error, outputs, node_errors = validate_prompt(prompt)
        if not valid:
            logger.warning("%s: invalid prompt: %s", self.config.name, error["message"])
            self.count("prompts invalid")
            return 400, {"error": error, "node_errors": node_errors}
        with self._lock:
            if prompt_id and (known := self._find(prompt_id)) is not None:
                return 200, {"prompt_id": prompt_id, "number": known[0], "node_errors": {}}
            prompt_id = prompt_id or str(uuid.uuid4())
            number = self._number
            self._number += 1
            item = (number, prompt_id, prompt, extra_data, outputs)
            heapq.heappush(self._pending, (number, next(self._seq), item))
            self._lock.notify()
            waiting = len(self._pending)
        self.count("prompts queued")
        logger.info("%s: prompt %s queued (%d pending)", self.config.name, prompt_id, waiting)
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}

    def _find(self, prompt_id: str):
        """The queue item of a prompt this node knows (pending, running or done), or None."""
        if prompt_id in self._running:
            return self._running[prompt_id]
        if prompt_id in self._history:
            return self._history[prompt_id]["prompt"]
        for _, _, item in self._pending:
            if item[1] == prompt_id:
                return item
        return None

    def history(self, prompt_id: str | None = None, max_items: int | None = None) -> dict:
        with self._lock:
            if prompt_id is not None:
                entry = self._history.get(prompt_id)
                return {prompt_id: json.loads(json.dumps(entry))} if entry else {}
            ids = list(self._history)
            if max_items is not None:
                ids = ids[-max_items:] if max_items > 0 else []
            return {pid: json.loads(json.dumps(self._history[pid])) for pid in ids}

    def queue(self) -> dict:
        with self._lock:
            running = [list(item) for item in self._running.values()]
            pending = [list(item) for _, _, item in sorted(self._pending)]
        return {"queue_running": running, "queue_pending": pending}

    def queue_remaining(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._running)

    def delete_pending(self, prompt_ids) -> int:
        with self._lock:
            before = len(self._pending)
            doomed = {str(pid) for pid in prompt_ids}
            self._pending = [e for e in self._pending if e[2][1] not in doomed]
            heapq.heapify(self._pending)
            return before - len(self._pending)

    def clear_pending(self) -> None:
        with self._lock:
            self._pending = []

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt `prompt_id` (every running prompt when None)."""
        with self._lock:
            targets = [prompt_id] if prompt_id else list(self._interrupts)
            hit = False
            for pid in targets:
                if pid in self._interrupts:
                    self._interrupts[pid].set()
                    hit = True
            return hit

    def delete_history(self, prompt_ids=None, clear: bool = False) -> None:
        with self._lock:
            if clear:
                self._history.clear()
            for pid in prompt_ids or ():
                self._history.pop(pid, None)

    def image_seed(self, filename: str) -> int | None:
        with self._lock:
            return self._images.get(filename)

    def system_stats(self) -> dict:
        c = self.config
        device = {
            "name": f"cuda:0 simulated {c.pool.upper()} GPU ({c.name})",
            "type": "cuda",
            "index": 0,
            "vram_total": 80 * 1024**3,
            "vram_free": 80 * 1024**3,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
            "node_name": c.name,
            "pool": c.pool,
        }
        return {
            "system": {
                "os": os.name,
                "ram_total": 0,
                "ram_free": 0,
                "comfyui_version": VERSION,
                "python_version": sys.version,
                "pytorch_version": "",
                "embedded_python": False,
                "argv": sys.argv,
                "node_name": c.name,
                "pool": c.pool,
                "workers": c.workers,
                "queue_remaining": self.queue_remaining(),
            },
            "devices": [device],
        }

    # --- The GPU ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping.is_set():
                    self._lock.wait()
                if self._stopping.is_set():
                    return
                _, _, item = heapq.heappop(self._pending)
                prompt_id = item[1]
                self._running[prompt_id] = item
                interrupt = self._interrupts[prompt_id] = threading.Event()
                cold = self._idle_since is None or (
                    len(self._running) == 1
                    and time.monotonic() - self._idle_since > self.config.idle_before_cold_s
                )
            try:
                outputs, status, meta = self._execute(item, interrupt, cold)
            except Exception as exc:  # a bug here must not kill the GPU thread
                logger.exception("%s: prompt %s crashed", self.config.name, prompt_id)
                outputs, meta = {}, {}
                status = self._status(
                    "error",
                    [
                        self._message("execution_start", prompt_id),
                        self._message(
                            "execution_error",
                            prompt_id,
                            exception_message=str(exc),
                            exception_type=type(exc).__name__,
                        ),
                    ],
                )
            with self._lock:
                self._running.pop(prompt_id, None)
                self._interrupts.pop(prompt_id, None)
                if not self._running:
                    self._idle_since = time.monotonic()
                if self._stopping.is_set() and not status["completed"]:
                    return  # shutting down: the prompt is lost, as with a real node
                while len(self._history) >= MAX_HISTORY:
                    self._history.pop(next(iter(self._history)))
                self._history[prompt_id] = {
                    "prompt": list(item),
                    "outputs": outputs,
                    "status": status,
                    "meta": meta,
                }
            self.count(f"prompts {status['status_str']}")

    @staticmethod
    def _message(event: str, prompt_id: str, **data) -> list:
        return [event, {"prompt_id": prompt_id, **data, "timestamp": _now_ms()}]

    @staticmethod
    def _status(status_str: str, messages: list) -> dict:
        return {
            "status_str": status_str,
            "completed": status_str == "success",
            "messages": messages,
        }

    def _service_time(self) -> float:
        mean, sigma = max(self.config.mean_s, 1e-6), self.config.sigma
        with self._lock:
            return self.rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma)

    def _execute(self, item, interrupt: threading.Event, cold: bool):
        _, prompt_id, prompt, _, output_ids = item
        c = self.config
        started = time.monotonic()
        messages = [
            self._message("execution_start", prompt_id),
            self._message("execution_cached", prompt_id, nodes=[]),
        ]
        executed: list[str] = []
        cold_s = c.cold_start_s if cold else 0.0
        service = self._service_time()
        texts = [
            v
            for node in prompt.values()
            for v in (node.get("inputs") or {}).values()
            if isinstance(v, str)
        ]
        failing = None
        if any("[reject]" in t for t in texts):
            failing = (
                "CLIPTextEncode",
                PromptRejected("The model's safety check refused this prompt."),
                cold_s,
            )
        elif any("[fail]" in t for t in texts) or self.chance(c.failure_rate):
            failing = (
                "KSampler",
                RuntimeError("Simulated GPU failure: CUDA error: an illegal memory access."),
                cold_s + service / 2,
            )
        duration = failing[2] if failing else cold_s + service
        if interrupt.wait(duration):
            node_id = self._node_of(prompt, "KSampler")
            messages.append(
                self._message(
                    "execution_interrupted",
                    prompt_id,
                    node_id=node_id,
                    node_type="KSampler",
                    executed=executed,
                )
            )
            logger.info("%s: prompt %s interrupted", c.name, prompt_id)
            return {}, self._status("error", messages), {}
        if failing:
            class_type, exc, _ = failing
            node_id = self._node_of(prompt, class_type)
            exc_type = type(exc)
            module = "" if exc_type.__module__ == "builtins" else exc_type.__module__ + "."
            messages.append(
                self._message(
                    "execution_error",
                    prompt_id,
                    node_id=node_id,
                    node_type=class_type,
                    executed=executed,
                    exception_message=str(exc),
                    exception_type=module + exc_type.__qualname__,
                    traceback=[],
                    current_inputs={},
                    current_outputs={},
                )
            )
            logger.info("%s: prompt %s failed: %s", c.name, prompt_id, exc)
            return {}, self._status("error", messages), {}

        outputs: dict[str, dict] = {}
        meta: dict[str, dict] = {}
        seed = self._first_input(prompt, "KSampler", "seed", 0)
        batch = self._first_input(prompt, "EmptyLatentImage", "batch_size", 1)
        for out_id in output_ids:
            node = prompt[out_id]
            kind = "output" if node["class_type"] == "SaveImage" else "temp"
            prefix = str(node.get("inputs", {}).get("filename_prefix", "ComfyUI"))
            prefix = prefix.replace("/", "_").replace("\\", "_") or "ComfyUI"
            images = []
            for index in range(int(batch)):
                if kind == "output":
                    filename = f"{prefix}_{next(self._image_counter):05}_.png"
                else:
                    filename = f"ComfyUI_temp_{uuid.uuid4().hex[:5]}_{index:05}_.png"
                with self._lock:
                    self._images[filename] = (int(seed) + index) & 0xFFFFFF
                images.append({"filename": filename, "subfolder": "", "type": kind})
            outputs[out_id] = {"images": images}
            meta[out_id] = {
                "node_id": out_id,
                "display_node": out_id,
                "parent_node": None,
                "real_node_id": out_id,
            }
        executed.extend(prompt)
        messages.append(self._message("execution_success", prompt_id))
        logger.info(
            "%s: prompt %s succeeded in %.2fs (cold start %.2fs)",
            c.name,
            prompt_id,
            time.monotonic() - started,
            cold_s,
        )
        return outputs, self._status("success", messages), meta

    @staticmethod
    def _node_of(prompt: dict, class_type: str) -> str | None:
        return next((nid for nid, n in prompt.items() if n["class_type"] == class_type), None)

    @staticmethod
    def _first_input(prompt: dict, class_type: str, name: str, default):
        for node in prompt.values():
            if node["class_type"] == class_type and name in node.get("inputs", {}):
                value = node["inputs"][name]
                if not isinstance(value, list):
                    return value
        return default


# --- HTTP -----------------------------------------------------------------------------------


def png_bytes(rgb: int, size: int = 8) -> bytes:
    """A solid-colour PNG, size × size."""
    r, g, b = (rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255
    raw = b"".join(b"\x00" + bytes((r, g, b)) * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's session reuses its connection
    server: GpuNodeServer
    server_version = "GpuNode/1"
    timeout = 30  # an idle keep-alive connection is closed after this many seconds

    def setup(self):
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format, *args):
        if self.server.verbose:
            name = self.server.node.config.name
            logger.info("%s: %s %s", name, self.address_string(), format % args)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        node = self.server.node
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if path == "/api" or path.startswith("/api/"):
            path = path[4:] or "/"
        body = None
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self._send(413, {"error": "request body too large or unreadable"}, close=True)
                return
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except (ValueError, UnicodeDecodeError):
                body = _INVALID_JSON
        route = path if not path.startswith("/history/") else "/history/{id}"
        node.count(f"{method} {route}")
        faulty = not node.config.fault_routes or f"{method} {route}" in node.config.fault_routes
        if faulty and node.chance(node.config.flaky_http_rate):
            node.count("flaky")
            status = node.config.flaky_http_status
            self._send(status, {"error": f"simulated transient failure ({status})"})
            return
        try:
            status, payload = self._route(method, path, parse_qs(parts.query), body)
        except Exception:
            logger.exception("%s: %s %s failed", node.config.name, method, self.path)
            status, payload = 500, {"error": "internal error"}
        if faulty and node.chance(node.config.drop_response_rate):
            node.count("dropped")
            self.close_connection = True  # handled, but the answer is lost
            return
        if isinstance(payload, bytes):
            self._send_bytes(status, payload, "image/png")
        else:
            self._send(status, payload)

    def _route(self, method: str, path: str, query: dict, body):
        node = self.server.node
        if body is _INVALID_JSON:
            error = _error("invalid_json", "The request body is not valid JSON")
            return 400, {"error": error, "node_errors": {}}
        if method == "GET":
            if path == "/history":
                max_items = query.get("max_items", [None])[0]
                try:
                    max_items = int(max_items) if max_items is not None else None
                except ValueError:
                    return 400, {"error": "max_items must be an integer"}
                return 200, node.history(max_items=max_items)
            if path.startswith("/history/"):
                return 200, node.history(prompt_id=path[len("/history/") :])
            if path == "/queue":
                return 200, node.queue()
            if path == "/prompt":
                return 200, {"exec_info": {"queue_remaining": node.queue_remaining()}}
            if path == "/system_stats":
                return 200, node.system_stats()
            if path == "/view":
                filename = query.get("filename", [""])[0]
                seed = node.image_seed(filename)
                if seed is None:
                    return 404, {"error": "not found"}
                return 200, png_bytes(seed)
            return 404, {"error": "not found"}
        if path == "/prompt":
            return node.submit(body)
        if not isinstance(body, dict):
            return 400, {"error": "expected a JSON object"}
        if path == "/queue":
            if body.get("clear"):
                node.clear_pending()
            if body.get("delete"):
                node.delete_pending(body["delete"])
            return 200, {}
        if path == "/interrupt":
            node.interrupt(body.get("prompt_id"))
            return 200, {}
        if path == "/history":
            node.delete_history(body.get("delete"), clear=bool(body.get("clear")))
            return 200, {}
        return 404, {"error": "not found"}

    def _send(self, status: int, payload, *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json", close=close)

    def _send_bytes(self, status: int, data: bytes, content_type: str, close=False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


_INVALID_JSON = object()


class GpuNodeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, node: GpuNode, *, verbose: bool = False) -> None:
        self.node = node
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((node.config.host, node.config.port), _Handler)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away (or a connection closed by stop()): not news
        logger.exception("%s: error handling a request", self.node.config.name)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Close the open keep-alive connections too, as a stopped process would."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class RunningNode:
    """A node serving in background threads (tests, embedding): `.url`, `.node`, `.stop()`."""

    def __init__(self, config: NodeConfig, *, verbose: bool = False) -> None:
        self.node = GpuNode(config)
        self.server = GpuNodeServer(self.node, verbose=verbose)
        self.node.start()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{config.name}-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def name(self) -> str:
        return self.node.config.name

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.node.stop()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningNode:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(config: NodeConfig, *, verbose: bool = False) -> RunningNode:
    """Start a node in background threads (port 0 picks a free port; see `.url`)."""
    return RunningNode(config, verbose=verbose)


def serve(config: NodeConfig, *, out=print, verbose: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the command's body)."""
    stop = threading.Event()
    previous = {}

    def request_stop(signum, frame):
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, request_stop)
    try:
        running = start(config, verbose=verbose)
        c = config
        out(f"GPU node {c.name} (pool {c.pool}) listening on {running.url}")
        out(
            f"GPU node {c.name}: {c.workers} prompt{'s' if c.workers != 1 else ''} at a time, "
            f"mean service time {c.mean_s:g}s (sigma {c.sigma:g}), failure rate "
            f"{c.failure_rate:g}, cold start {c.cold_start_s:g}s after {c.idle_before_cold_s:g}s "
            "idle"
        )
        if c.flaky_http_rate or c.drop_response_rate:
            routes = ", ".join(c.fault_routes) or "all routes"
            out(
                f"GPU node {c.name}: fault injection on (flaky HTTP {c.flaky_http_rate:g} "
                f"→ {c.flaky_http_status}, dropped responses {c.drop_response_rate:g}; {routes})"
            )
        try:
            while not stop.wait(0.5):
                pass
        finally:
            out(f"GPU node {c.name} stopping")
            running.stop()
            out(f"GPU node {c.name} stopped")
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
