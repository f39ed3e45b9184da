"""The simulated node itself: its configuration, queue, GPU worker threads and history.

It runs any graph of the node classes a real ComfyUI has (validated against the recorded
/object_info): the GPU's work is one service time per prompt (unless every output is cached);
the output nodes report what a real node reports (OUTPUT_FILES, `PreviewAny`'s text, nothing
for the others); a literal given where a link is due fails at run time, as on a real node.

Service time is drawn log-normally around `mean_s`, with a cold start when the node has been
idle and a failure rate; prompt text containing `[fail]` fails (a GPU error) and `[reject]` is
refused by the node's safety check (the customer's fault)."""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import logging
import math
import os
import posixpath
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from devtools.gpu_node.validation import (
    COMBO,
    NODE_TYPES,
    PRIMITIVES,
    error_body,
    object_info,
    validate_prompt,
)

logger = logging.getLogger(__name__)

MAX_HISTORY = 10_000
# The output nodes that write files, as a real ComfyUI 0.3.64 reports them in the history:
# class → (key, extension, type). Videos and animations are listed under "images" with
# "animated": [true]; audio under "audio", 3D models under "3d".
OUTPUT_FILES = {
    "SaveImage": ("images", "png", "output"),
    "PreviewImage": ("images", "png", "temp"),
    "MaskPreview": ("images", "png", "temp"),
    "SaveAnimatedWEBP": ("images", "webp", "output"),
    "SaveAnimatedPNG": ("images", "png", "output"),
    "SaveWEBM": ("images", "webm", "output"),
    "SaveVideo": ("images", "mp4", "output"),
    "SaveSVGNode": ("images", "svg", "output"),
    "SaveAudio": ("audio", "flac", "output"),
    "SaveAudioMP3": ("audio", "mp3", "output"),
    "SaveAudioOpus": ("audio", "opus", "output"),
    "PreviewAudio": ("audio", "flac", "temp"),
    "SaveGLB": ("3d", "glb", "output"),
    "SaveLatent": ("latents", "latent", "output"),
}
ANIMATED = frozenset({"SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM", "SaveVideo"})
VERSION = "gpu-credits-sim-1"


class PromptRejected(Exception):
    """The node's safety check refused the prompt (the customer's fault)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    # Only these routes ("POST /prompt", "GET /history/{id}", "GET /queue", ...) when given;
    # flaky_routes / drop_routes, when given, name the routes of one kind of fault.
    fault_routes: tuple[str, ...] = ()
    flaky_routes: tuple[str, ...] = ()
    drop_routes: tuple[str, ...] = ()
    # At most this many faults of each kind, then the node behaves (None: no limit).
    flaky_limit: int | None = None
    drop_limit: int | None = None
    random_seed: int | None = None
    # The checkpoint files installed on the node: a `ckpt_name` must name one, as on a real
    # node. None: any name is accepted (as if every checkpoint were installed).
    checkpoints: tuple[str, ...] | None = None

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
        self._files: dict[tuple[str, str], int] = {}  # (subfolder, filename) → seed, for /view
        self._file_counters: Counter = Counter()  # (subfolder, prefix) → last number used
        # ComfyUI's cache: each node's outputs of the last prompt run, by input signature.
        self._cache: dict[str, dict] = {}
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

    def fault(self, kind: str, route: str) -> bool:
        """Whether to inject a fault of `kind` ("flaky" or "dropped") into this request of
        `route` ("POST /prompt"): the kind's routes, rate and limit decide; counted in stats."""
        c = self.config
        rate, routes, limit = (
            (c.flaky_http_rate, c.flaky_routes, c.flaky_limit)
            if kind == "flaky"
            else (c.drop_response_rate, c.drop_routes, c.drop_limit)
        )
        routes = routes or c.fault_routes
        if rate <= 0 or (routes and route not in routes):
            return False
        with self._lock:
            if limit is not None and self.stats[kind] >= limit:
                return False
            if self.rng.random() >= rate:
                return False
        self.count(kind)
        return True

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
            error = error_body("no_prompt", "No prompt provided", "No prompt provided")
            return 400, {"error": error, "node_errors": {}}
        prompt = body["prompt"]
        prompt_id = body.get("prompt_id")
        valid_id = isinstance(prompt_id, str) and 0 < len(prompt_id) <= 128
        if prompt_id is not None and not valid_id:
            error = error_body("invalid_prompt", "prompt_id must be a string of 1-128 characters")
            return 400, {"error": error, "node_errors": {}}
        extra_data = body.get("extra_data") or {}
        if not isinstance(extra_data, dict):
            error = error_body("invalid_prompt", "extra_data must be an object")
            return 400, {"error": error, "node_errors": {}}
        extra_data = dict(extra_data)
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        # As on a real node, a prompt_id posted twice is queued twice (no de-duplication): a
        # client retrying a POST must first ask whether the node already has it.
        valid, error, outputs, node_errors = validate_prompt(
            prompt, checkpoints=self.config.checkpoints
        )
        if not valid:
            logger.warning("%s: invalid prompt: %s", self.config.name, error["message"])
            self.count("prompts invalid")
            return 400, {"error": error, "node_errors": node_errors}
        with self._lock:
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

    def file_seed(self, filename: str, subfolder: str = "") -> int | None:
        """The seed a saved output was drawn from (its content), or None for an unknown file."""
        with self._lock:
            return self._files.get((subfolder, filename))

    def object_info(self) -> dict:
        """GET /object_info: the recorded classes of a real node, with this node's installed
        checkpoints as the `ckpt_name` choices when it is given some."""
        info = object_info()
        if self.config.checkpoints is None:
            return info
        info = copy.deepcopy(info)
        for entry in info.values():
            for category in ("required", "optional"):
                spec = (entry.get("input") or {}).get(category) or {}
                if "ckpt_name" in spec and isinstance(spec["ckpt_name"][0], list):
                    spec["ckpt_name"][0] = list(self.config.checkpoints)
        return info

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
                "required_frontend_version": "",
                "installed_templates_version": "",
                "required_templates_version": "",
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
        signatures = _signatures(prompt, output_ids)
        with self._lock:
            cache = self._cache
        # As ComfyUI: nodes whose inputs are those of a node of the last prompt run are not run
        # again, and a cached output node reports that run's files.
        cached = [nid for nid in prompt if nid in signatures and signatures[nid] in cache]
        messages = [
            self._message("execution_start", prompt_id),
            self._message("execution_cached", prompt_id, nodes=cached),
        ]
        if all(out_id in cached for out_id in output_ids):
            outputs = {
                out_id: copy.deepcopy(cache[signatures[out_id]])
                for out_id in output_ids
                if cache[signatures[out_id]]
            }
            messages.append(self._message("execution_success", prompt_id))
            logger.info("%s: prompt %s answered from the cache", c.name, prompt_id)
            return outputs, self._status("success", messages), _meta(output_ids)
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
        elif literal := _literal_for_a_link(prompt, signatures):
            node_id, name, type_ = literal
            failing = (
                prompt[node_id]["class_type"],
                AttributeError(
                    f"'{type(prompt[node_id]['inputs'][name]).__name__}' object given for"
                    f" input {name} ({type_}) has no attribute of a {type_}"
                ),
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

        ui = {
            out_id: (
                copy.deepcopy(cache[signatures[out_id]])
                if out_id in cached
                else self._save(prompt, prompt[out_id])
            )
            for out_id in output_ids
        }
        # As ComfyUI: only the nodes that report something are listed in the outputs.
        outputs = {out_id: files for out_id, files in ui.items() if files}
        with self._lock:
            self._cache = {signatures[nid]: ui.get(nid, {}) for nid in prompt if nid in signatures}
        executed.extend(prompt)
        messages.append(self._message("execution_success", prompt_id))
        logger.info(
            "%s: prompt %s succeeded in %.2fs (cold start %.2fs)",
            c.name,
            prompt_id,
            time.monotonic() - started,
            cold_s,
        )
        return outputs, self._status("success", messages), _meta(output_ids)

    def _save(self, prompt: dict, node: dict) -> dict:
        """What an output node reports, as ComfyUI's nodes report it (OUTPUT_FILES): the files
        it writes, named as ComfyUI names them (the prefix's folder is the subfolder, the name
        numbered per prefix: `shared_00001_.png`; previews are temporary files), `text` for
        PreviewAny, nothing for the others (SaveImageWebsocket, model savers, …)."""
        class_type = node["class_type"]
        inputs = node.get("inputs") or {}
        if class_type == "PreviewAny":
            source = inputs.get("source")
            return {"text": [json.dumps(source) if isinstance(source, list) else str(source)]}
        if class_type not in OUTPUT_FILES:
            return {}
        key, extension, kind = OUTPUT_FILES[class_type]
        seed = self._first_input(prompt, ("KSampler", "seed"), ("EmptyImage", "color"))
        count = 1
        if key == "images" and class_type not in ANIMATED:
            count = int(
                self._first_input(
                    prompt,
                    ("EmptyLatentImage", "batch_size"),
                    ("EmptyImage", "batch_size"),
                    default=1,
                )
            )
        if kind == "temp":
            token = uuid.uuid4().hex[:5]
            names = [
                ("", f"ComfyUI_temp_{token}_{index + 1:05}_.{extension}") for index in range(count)
            ]
        else:
            prefix = _literal(prompt, inputs.get("filename_prefix")) or "ComfyUI"
            prefix = posixpath.normpath(str(prefix))
            subfolder, name = posixpath.split(prefix)
            if subfolder.startswith(("/", "..")):
                subfolder = ""  # a real node refuses to write outside its output folder
            with self._lock:
                first = self._file_counters[(subfolder, name)] + 1
                self._file_counters[(subfolder, name)] += count
            names = [(subfolder, f"{name}_{first + i:05}_.{extension}") for i in range(count)]
        files = [{**f, "type": kind} for f in self._register(names, int(seed or 0))]
        return {key: files, "animated": [True]} if class_type in ANIMATED else {key: files}

    def _register(self, names: list[tuple[str, str]], seed: int) -> list[dict]:
        with self._lock:
            for index, key in enumerate(names):
                self._files[key] = (seed + index) & 0xFFFFFF
        return [{"filename": filename, "subfolder": subfolder} for subfolder, filename in names]

    @staticmethod
    def _node_of(prompt: dict, class_type: str) -> str | None:
        return next((nid for nid, n in prompt.items() if n["class_type"] == class_type), None)

    @staticmethod
    def _first_input(prompt: dict, *wanted: tuple[str, str], default=None):
        """The first literal value of (class_type, input) in `wanted` order."""
        for class_type, name in wanted:
            for node in prompt.values():
                if node["class_type"] == class_type and name in node.get("inputs", {}):
                    value = node["inputs"][name]
                    if not isinstance(value, list):
                        return value
        return default


def _literal(prompt: dict, value):
    """A value, a link to a Primitive* node (PrimitiveString, …) followed to its value."""
    while isinstance(value, list) and len(value) == 2 and value[0] in prompt:
        node = prompt[value[0]]
        if not str(node["class_type"]).startswith("Primitive"):
            return None
        value = (node.get("inputs") or {}).get("value")
    return value


def _literal_for_a_link(prompt: dict, signatures: dict) -> tuple[str, str, str] | None:
    """(node, input, type) of a literal value given for an input that takes another node's
    output (a MODEL, an IMAGE, …): ComfyUI's validation lets it through and the node fails
    when it runs."""
    for node_id in signatures:
        node = prompt[node_id]
        spec = NODE_TYPES[node["class_type"]]
        for name, value in (node.get("inputs") or {}).items():
            type_ = (spec["required"].get(name) or spec["optional"].get(name) or (None,))[0]
            if (
                isinstance(type_, str)
                and type_ not in PRIMITIVES
                and type_ != COMBO
                and "*" not in type_
                and not isinstance(value, list)
            ):
                return node_id, name, type_
    return None


def _meta(output_ids) -> dict[str, dict]:
    return {
        out_id: {
            "node_id": out_id,
            "display_node": out_id,
            "parent_node": None,
            "real_node_id": out_id,
        }
        for out_id in output_ids
    }


def _signatures(prompt: dict, output_ids) -> dict[str, str]:
    """An input signature per node the outputs depend on: its class and inputs, links replaced
    by the linked node's signature (what ComfyUI's cache is keyed by)."""
    signatures: dict[str, str] = {}

    def sign(node_id: str) -> str:
        if node_id not in signatures:
            node = prompt[node_id]
            inputs = {
                name: [sign(value[0]), value[1]] if isinstance(value, list) else value
                for name, value in sorted((node.get("inputs") or {}).items())
            }
            signatures[node_id] = json.dumps([node["class_type"], inputs], sort_keys=True)
        return signatures[node_id]

    for out_id in output_ids:
        sign(out_id)
    return signatures
