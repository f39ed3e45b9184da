"""GPU backends behind one small interface.

A backend turns a `RunRequest` into a `RunResult` on a node of the model's pool, or raises
`BackendError` saying whether the failure is the customer's (then the job is charged). Transient
HTTP failures are retried inside the backend itself (see `comfyui`). `get_backend(name)` returns
the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class RunRequest:
    job_id: str
    model_slug: str
    pool_slug: str
    params: dict
    backend_config: dict
    timeout_s: int
    # The plan's `watermark` flag (free tier): the output must carry a watermark. Each backend
    # passes it on its own documented way (simulated: recorded in the output; ComfyUI: the
    # `{{watermark}}` workflow value, and a note in the output).
    watermark: bool = False


@dataclass(frozen=True)
class RunResult:
    output: dict
    node: str
    # When the backend knows when the GPU really started/finished (e.g. ComfyUI's execution
    # timestamps), the run is recorded with those; otherwise with the worker's clock.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    meta: dict = field(default_factory=dict)
    # The units really produced, when the backend knows them (e.g. {"duration_s": 4} for a
    # video asked for 6 s): a job whose price follows the request is charged their price, at
    # most what was held (`generations.price_tables`).
    units: dict = field(default_factory=dict)


class BackendError(Exception):
    def __init__(
        self,
        message: str,
        *,
        code: str = "backend_error",
        customer_fault: bool = False,
        node: str = "",
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.customer_fault = customer_fault
        self.node = node
        # When the GPU really ran it, if the backend knows (else the worker's clock is used).
        self.started_at = started_at
        self.finished_at = finished_at


class Backend(Protocol):
    def pick_node(self, request: RunRequest) -> str:
        """The node the job will run on (recorded before the run starts)."""

    def run(self, request: RunRequest, *, node: str) -> RunResult:
        """Run the job on `node`; blocks until done. Raises BackendError on failure."""


def get_backend(name: str) -> Backend:
    if name == "simulated":
        from generations.backends.simulated import SimulatedBackend

        return SimulatedBackend()
    if name == "comfyui":
        from generations.backends.comfyui import ComfyUIBackend

        return ComfyUIBackend()
    raise ValueError(f"Unknown backend {name!r}")
