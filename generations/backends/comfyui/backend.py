"""`ComfyUIBackend`: the nodes of a pool from settings, the least-loaded one picked, and a run —
the workflow posted once (asked about before any re-post), its history polled until done or the
deadline, then read into the result."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from django.conf import settings

from generations.backends import BackendError, RunRequest, RunResult
from generations.backends.comfyui.client import (
    DeadlineExceeded,
    NodeClient,
    Options,
    queue_load,
    read_json,
    redact,
)
from generations.backends.comfyui.outputs import run_result
from generations.backends.comfyui.workflow import build_workflow, workflow_rejection

logger = logging.getLogger(__name__)

_round_robin: dict[str, itertools.count] = {}
_round_robin_lock = threading.Lock()


class ComfyUIBackend:
    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = NodeClient(session=session, sleep=sleep)

    @property
    def session(self) -> requests.Session:
        return self._client.session

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
            loads = list(pool.map(lambda name: queue_load(nodes[name], opts), order))
        reachable = [(load, i) for i, load in enumerate(loads) if load is not None]
        if not reachable:
            logger.warning(
                "No ComfyUI node of pool %s answered GET /queue; picking %s in turn",
                request.pool_slug,
                order[0],
            )
            return order[0]
        return order[min(reachable)[1]]

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
        except DeadlineExceeded:
            self._client.cancel(base, node, prompt_id, opts)
            raise BackendError(
                f"Timed out after {request.timeout_s}s on GPU node {node}.",
                code="timeout",
                node=node,
            ) from None
        return run_result(
            entry, base=base, node=node, prompt_id=prompt_id, values=values, request=request
        )

    def _submit(self, base, node, prompt_id, workflow, user_inputs, request, deadline, opts):
        body = {
            "prompt": workflow,
            "prompt_id": prompt_id,
            "client_id": f"gpu-credits-{request.job_id}",
            "extra_data": {"job_id": request.job_id, "model": request.model_slug},
        }
        resp = self._client.call(
            "POST",
            base,
            "/prompt",
            node=node,
            deadline=deadline,
            opts=opts,
            json=body,
            # A lost answer may hide an accepted prompt (a real node queues a prompt_id posted
            # twice twice): ask, and keep asking while the node can't tell, before posting again.
            ask=lambda: self._client.knows(base, prompt_id, opts),
        )
        if resp is None:
            logger.info("GPU node %s had prompt %s already; not posted again", node, prompt_id)
            return
        if resp.status_code == 200:
            data = read_json(resp, node, "POST /prompt")
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
            raise workflow_rejection(resp, node, user_inputs)
        raise BackendError(
            f"GPU node {node} answered HTTP {resp.status_code} to POST /prompt.",
            code="comfyui_http_error",
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
                if self._client.knows(base, prompt_id, opts, history=False) is False:
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
                raise DeadlineExceeded
            self._client.sleep(pause)
            interval = min(interval * 1.5, opts.poll_max_s)

    def _history(self, base, node, path, prompt_id, deadline, opts) -> dict | None:
        resp = self._client.call("GET", base, path, node=node, deadline=deadline, opts=opts)
        if resp.status_code != 200:
            raise BackendError(
                f"GPU node {node} answered HTTP {resp.status_code} to GET /history.",
                code="comfyui_http_error",
                node=node,
            )
        data = read_json(resp, node, "GET /history")
        entry = data.get(prompt_id)
        return entry if isinstance(entry, dict) else None
