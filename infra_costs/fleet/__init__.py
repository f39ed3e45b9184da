"""The GPU fleet (issue 11): managed nodes, their providers, the autoscaler and the uptime
they record. Public API — other apps call these, never the modules' internals:

* lifecycle (`infra_costs.fleet.lifecycle`): `node_rent`, `node_resume`, `node_stop`,
  `node_release`, `fleet_advance` (the tick), and for dispatch `node_acquire` (a slot on a
  node that takes work), `node_free`, `free_slots`, `pool_policy` (`pool_managed` as an
  expression of the caller's query);
* `pool_autoscale` (`infra_costs.fleet.autoscaler`): one decision per pool per tick, given its
  `QueueSignals` (`infra_costs.fleet.signals`; the caller measures the queue);
* providers (`infra_costs.fleet.providers`): `get_provider`, the `simulated` one;
* staff actions (`infra_costs.fleet.staff`): `fleet_staff_action` (rent / resume / stop /
  release by a staff user, recorded as a decision); for the staff fleet page
  (`infra_costs.fleet.selectors`) `fleet_overview` and `node_actions` (what a node allows now).
"""

from infra_costs.fleet.autoscaler import pool_autoscale
from infra_costs.fleet.lifecycle import (
    FleetError,
    ProviderRefused,
    fleet_advance,
    free_slots,
    node_acquire,
    node_free,
    node_join,
    node_release,
    node_rent,
    node_resume,
    node_stop,
    pool_managed,
    pool_policy,
)
from infra_costs.fleet.selectors import fleet_overview, node_actions
from infra_costs.fleet.signals import QueueSignals
from infra_costs.fleet.staff import STAFF_ACTIONS, fleet_staff_action

__all__ = [
    "STAFF_ACTIONS",
    "FleetError",
    "ProviderRefused",
    "QueueSignals",
    "fleet_advance",
    "fleet_overview",
    "fleet_staff_action",
    "free_slots",
    "node_acquire",
    "node_actions",
    "node_free",
    "node_join",
    "node_release",
    "node_rent",
    "node_resume",
    "node_stop",
    "pool_autoscale",
    "pool_managed",
    "pool_policy",
]
