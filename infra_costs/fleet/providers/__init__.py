"""GPU providers behind one small interface: rent, resume, stop, release, status.

Operations are asynchronous, as on a real cloud: a call starts one and says when it expects
it done (`Operation.ready_at`); `status` then says whether it finished, failed, or is still
under way, and — for a running node — whether it is healthy. A refusal known at once (no
market capacity to rent) raises `ProviderRefused`. `get_provider(name, config)` returns the
implementation; `simulated` is what `make run` and the tests use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class ProviderRefused(Exception):
    """The provider refused the operation outright (e.g. no capacity in the market)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Operation:
    ready_at: datetime  # when the provider expects it done
    ref: str = ""  # the provider's id of the machine (set by rent)


@dataclass(frozen=True)
class Status:
    """`pending` (operation under way), `done`, `failed` (with why); for a node with no
    operation under way, `health` is ok / degraded / down."""

    phase: str  # "pending" | "done" | "failed" | "steady"
    health: str = "ok"
    message: str = ""


class NodeLike(Protocol):
    name: str
    provider_ref: str
    capacity_type: str
    transition: str
    transition_ready_at: datetime | None


class Provider(Protocol):
    name: str

    def rent(
        self, *, pool_slug: str, node_name: str, capacity_type: str, now: datetime
    ) -> Operation:
        """Lease a machine and set it up with the model loaded (→ hot)."""

    def resume(self, *, node: NodeLike, now: datetime) -> Operation:
        """Start a stopped, leased machine and load the model (warm → hot)."""

    def stop(self, *, node: NodeLike, now: datetime) -> Operation:
        """Stop a running machine, keeping the lease (hot → warm)."""

    def release(self, *, node: NodeLike, now: datetime) -> Operation:
        """Give the machine back (→ cold, $0)."""

    def status(self, *, node: NodeLike, now: datetime) -> Status:
        """Where the node's operation stands, or its health when none is under way."""


def get_provider(name: str, config: dict | None = None) -> Provider:
    if name == "simulated":
        from infra_costs.fleet.providers.simulated import SimulatedProvider

        return SimulatedProvider(config or {})
    raise ValueError(f"Unknown provider {name!r}")


PROVIDERS = ("simulated",)
