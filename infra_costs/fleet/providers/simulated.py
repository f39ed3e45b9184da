"""A simulated GPU provider: real delays (rent + setup 30–60 min, resume 2–5 min, model load),
market refusals and failed resumes, all drawn from a seeded RNG so a run is repeatable.

`config` keys (AutoscalePolicy.provider_config), seconds unless said:
`rent_delay_s` [min, max] (default [1800, 3600]), `resume_delay_s` [min, max] ([120, 300]),
`model_load_s` (60, added to rent and resume), `stop_delay_s` (30), `release_delay_s` (30),
`rent_failure_rate` (0–1, default 0: a rent refused for lack of market capacity),
`resume_failure_rate` (0–1, default 0: a resume that fails when it should be done),
`seed` (default 0). Node health is `ok` unless a node's name is listed in `degraded` or
`down` (a way to exercise alerts in a demo or a test).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from infra_costs.fleet.providers import NodeLike, Operation, ProviderRefused, Status

DEFAULTS: dict = {
    "rent_delay_s": [1800, 3600],
    "resume_delay_s": [120, 300],
    "model_load_s": 60,
    "stop_delay_s": 30,
    "release_delay_s": 30,
    "rent_failure_rate": 0,
    "resume_failure_rate": 0,
    "seed": 0,
    "degraded": [],
    "down": [],
}


def config_errors(config) -> dict[str, str]:
    """Field → message for a bad provider_config (empty when it is fine)."""
    if not isinstance(config, dict):
        return {"provider_config": "Must be an object of settings."}
    errors: dict[str, str] = {}
    for key, value in config.items():
        if key not in DEFAULTS:
            errors[key] = "Unknown setting."
        elif key in ("rent_delay_s", "resume_delay_s"):
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
                and 0 <= value[0] <= value[1] <= 7 * 86400
            )
            if not ok:
                errors[key] = "Must be [min, max] seconds, 0 ≤ min ≤ max ≤ 7 days."
        elif key in ("rent_failure_rate", "resume_failure_rate"):
            if not (
                isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
            ):
                errors[key] = "Must be a number from 0 to 1."
        elif key in ("degraded", "down"):
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                errors[key] = "Must be a list of node names."
        elif key == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                errors[key] = "Must be an integer."
        elif not (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 86400
        ):
            errors[key] = "Must be seconds from 0 to 86400."
    return errors


class SimulatedProvider:
    name = "simulated"

    def __init__(self, config: dict) -> None:
        self.config = {**DEFAULTS, **(config or {})}

    def _rng(self, *parts) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.config["seed"], *parts)))

    def _delay(self, key: str, rng: random.Random) -> float:
        lo, hi = self.config[key]
        return rng.uniform(float(lo), float(hi))

    def rent(
        self, *, pool_slug: str, node_name: str, capacity_type: str, now: datetime
    ) -> Operation:
        rng = self._rng("rent", node_name, now.isoformat())
        if rng.random() < float(self.config["rent_failure_rate"]):
            raise ProviderRefused(f"No {capacity_type.replace('_', '-')} capacity in the market.")
        seconds = self._delay("rent_delay_s", rng) + float(self.config["model_load_s"])
        return Operation(ready_at=now + timedelta(seconds=seconds), ref=f"sim-{node_name}")

    def resume(self, *, node: NodeLike, now: datetime) -> Operation:
        rng = self._rng("resume", node.name, now.isoformat())
        seconds = self._delay("resume_delay_s", rng) + float(self.config["model_load_s"])
        return Operation(ready_at=now + timedelta(seconds=seconds), ref=node.provider_ref)

    def stop(self, *, node: NodeLike, now: datetime) -> Operation:
        seconds = float(self.config["stop_delay_s"])
        return Operation(ready_at=now + timedelta(seconds=seconds), ref=node.provider_ref)

    def release(self, *, node: NodeLike, now: datetime) -> Operation:
        seconds = float(self.config["release_delay_s"])
        return Operation(ready_at=now + timedelta(seconds=seconds), ref=node.provider_ref)

    def status(self, *, node: NodeLike, now: datetime) -> Status:
        if node.transition:
            if node.transition_ready_at is not None and now < node.transition_ready_at:
                return Status(phase="pending")
            if node.transition == "resuming":
                rng = self._rng("resume-outcome", node.name, node.transition_ready_at)
                if rng.random() < float(self.config["resume_failure_rate"]):
                    return Status(phase="failed", message="The machine did not come back up.")
            return Status(phase="done")
        if node.name in self.config["down"]:
            return Status(phase="steady", health="down", message="The machine stopped answering.")
        if node.name in self.config["degraded"]:
            return Status(phase="steady", health="degraded", message="The GPU reports errors.")
        return Status(phase="steady")
