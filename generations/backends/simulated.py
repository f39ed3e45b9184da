"""A simulated GPU: service time drawn from a log-normal distribution per model, a cold-start
delay when the node has been idle, and a failure rate. The default backend of `make run`
and the tests (which make it instant with GENERATIONS_SIMULATED_SPEEDUP=0).

`backend_config` keys: `mean_s` (mean service time, default 2.0), `sigma` (log-normal shape,
default 0.25), `cold_start_s` (default 0), `idle_before_cold_s` (default 300),
`failure_rate` (0–1, default 0), `output_type` (image, audio, video, 3d; default image),
`batch_size` (jobs of compatible params run in one call, default 1: see
`generations.services.batching`), `batch_marginal` (a batch takes its longest job's time
plus this share of each other job's, default 0.3) and `actual_units` (`{"duration_s": 0.5}`:
the run reports it really produced this share of the param it was asked for — a video cut
short — so a price that follows the request charges the actual units). The
result's `url` is the job's output file (`/api/v1/generations/<id>/output/<id>.<ext>`, a
placeholder of the type made on the fly, served to the job's organization only). Prompts
containing `[fail]` fail (not the customer's fault) and `[reject]` are refused as the
customer's fault — deterministic hooks for tests and demos. The result records the job's
`watermark` flag (the plan's), as a real backend would apply it.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib

from django.conf import settings
from django.urls import reverse

from generations.backends import BackendError, RunRequest, RunResult
from generations.backends.placeholders import extension

_last_run: dict[str, float] = {}
_lock = threading.Lock()


def output_url(job_id: str, kind: str) -> str:
    """Where a simulated job's output is fetched: a placeholder file of its type (PNG, WAV,
    MP4, GLB) made on the fly, for the job's organization only."""
    filename = f"{job_id}.{extension(kind)}"
    return reverse("api-generation-output", kwargs={"id": job_id, "filename": filename})


def _actual_units(params: dict, shares) -> dict:
    """The units a run reports it produced: `share` × the param asked for, per configured param."""
    units: dict = {}
    for name, share in (shares or {}).items() if isinstance(shares, dict) else ():
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(share, bool) or not isinstance(share, int | float):
            continue
        actual = value * share
        units[name] = int(actual) if isinstance(value, int) else round(actual, 3)
    return units


class SimulatedBackend:
    def pick_node(self, request: RunRequest) -> str:
        nodes = max(
            1, int(request.backend_config.get("nodes", settings.GENERATIONS_SIMULATED_NODES))
        )
        index = zlib.crc32(request.job_id.encode()) % nodes + 1
        return f"{request.pool_slug}-sim-{index}"

    def _service_s(self, request: RunRequest) -> tuple[float, random.Random]:
        config = request.backend_config
        rng = random.Random(request.params.get("seed", request.job_id))
        mean = float(config.get("mean_s", 2.0))
        sigma = float(config.get("sigma", 0.25))
        return rng.lognormvariate(math.log(max(mean, 1e-6)) - sigma**2 / 2, sigma), rng

    def _cold_s(self, config: dict, node: str) -> float:
        now = time.monotonic()
        with _lock:
            last = _last_run.get(node)
            _last_run[node] = now
        if last is None or now - last > float(config.get("idle_before_cold_s", 300)):
            return float(config.get("cold_start_s", 0))
        return 0.0

    def _outcome(
        self, request: RunRequest, node: str, service: float, cold: float, rng: random.Random
    ) -> RunResult:
        config = request.backend_config
        prompt = str(request.params.get("prompt", ""))
        if "[reject]" in prompt:
            raise BackendError(
                "The model refused this prompt.",
                code="rejected_prompt",
                customer_fault=True,
                node=node,
            )
        if "[fail]" in prompt or rng.random() < float(config.get("failure_rate", 0)):
            raise BackendError("Simulated GPU failure.", code="gpu_failure", node=node)
        kind = str(config.get("output_type", "image"))
        return RunResult(
            units=_actual_units(request.params, config.get("actual_units")),
            output={
                "type": kind,
                "url": output_url(request.job_id, kind),
                "seed": request.params.get("seed", 0),
                "service_time_s": round(service, 3),
                "cold_start_s": cold,
                # The plan's watermark flag (free tier), as a real backend would apply it.
                "watermark": request.watermark,
            },
            node=node,
        )

    def run(self, request: RunRequest, *, node: str) -> RunResult:
        speedup = float(settings.GENERATIONS_SIMULATED_SPEEDUP)
        service, rng = self._service_s(request)
        cold = self._cold_s(request.backend_config, node)
        delay = (service + cold) * speedup
        if delay > request.timeout_s:
            time.sleep(request.timeout_s)
            raise BackendError("Timed out.", code="timeout", node=node)
        time.sleep(delay)
        return self._outcome(request, node, service, cold, rng)

    def run_batch(self, requests: list[RunRequest], *, node: str) -> list[RunResult | BackendError]:
        """One call for a batch: the longest job's time plus `batch_marginal` (default 0.3) of
        each other job's — a GPU runs a batch in well under the sum of its jobs. One result
        per request, in order; a job's own failure fails only that job."""
        config = requests[0].backend_config
        marginal = float(config.get("batch_marginal", 0.3))
        draws = [self._service_s(r) for r in requests]
        services = sorted(s for s, _ in draws)
        batch_s = services[-1] + marginal * sum(services[:-1])
        cold = self._cold_s(config, node)
        delay = (batch_s + cold) * float(settings.GENERATIONS_SIMULATED_SPEEDUP)
        timeout = min(r.timeout_s for r in requests)
        if delay > timeout:
            time.sleep(timeout)
            raise BackendError("Timed out.", code="timeout", node=node)
        time.sleep(delay)
        results: list[RunResult | BackendError] = []
        for request, (service, rng) in zip(requests, draws, strict=True):
            try:
                results.append(self._outcome(request, node, service, cold, rng))
            except BackendError as exc:
                results.append(exc)
        return results
