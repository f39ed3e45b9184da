"""`manage.py fleet`: the GPU fleet at a glance — per managed pool, nodes by state, the queue per
tier, cost today and the last decisions — and `--tick` to run one fleet tick now."""

from __future__ import annotations

import json
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.utils import timezone

from operations.fleet import fleet_tick
from operations.fleet_page import fleet_page


class Command(BaseCommand):
    help = (
        "Show the fleet-managed pools: nodes by state (cold, warm, hot, serving) and operations "
        "under way, queued jobs and the oldest wait per plan tier, cost so far today, and the "
        "last scaling decisions. With --tick, first run one fleet tick (advance provider "
        "operations, one autoscaling decision per pool, dispatch waiting jobs), as the beat "
        "task does every FLEET_TICK_S seconds. Pools are managed when they have an enabled "
        "autoscale policy (admin → Autoscale policies)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tick", action="store_true", help="run one fleet tick before showing the fleet"
        )
        parser.add_argument(
            "--decisions", type=int, default=5, help="decisions shown per pool (default 5)"
        )
        parser.add_argument("--format", choices=["table", "json"], default="table")

    def handle(self, *args, **options):
        now = timezone.now()
        if options["tick"]:
            result = fleet_tick(now=now)
            if options["format"] == "table":
                made = len(result.decisions)
                self.stdout.write(
                    f"Tick: {made} decision{'s' if made != 1 else ''}, "
                    f"{result.dispatched} job{'s' if result.dispatched != 1 else ''} dispatched."
                )
        panels = fleet_page(now=now)
        shown = max(0, options["decisions"])
        if options["format"] == "json":
            self.stdout.write(json.dumps([_as_dict(p, shown) for p in panels], indent=2))
            return
        if not panels:
            self.stdout.write(
                "No fleet-managed pools. Add an autoscale policy to a pool in the admin."
            )
            return
        for panel in panels:
            self._pool(panel, shown)

    def _pool(self, panel, shown: int) -> None:
        view = panel.view
        state = "on" if view.policy.enabled else "OFF"
        self.stdout.write(self.style.MIGRATE_HEADING(f"{view.pool.slug}  (autoscaler {state})"))
        counts = "  ".join(f"{s} {n}" for s, n in view.counts.items())
        moving = "  ".join(f"{t} {n}" for t, n in view.transitions.items())
        self.stdout.write(f"  nodes     {counts}" + (f"   ({moving})" if moving else ""))
        for node in view.nodes:
            n = node.node
            extra = ""
            if n.transition and n.transition_ready_at:
                extra = f" → {n.transition} until {n.transition_ready_at:%H:%M:%S}"
            flags = (" primary" if n.is_primary else "") + (
                f" health {n.health}" if n.health != "ok" else ""
            )
            self.stdout.write(f"    {n.name:<20} {n.state:<8}{extra}{flags}")
        if panel.tiers:
            queue = "  ".join(f"{t.tier} {t.depth} (oldest {t.oldest_wait})" for t in panel.tiers)
        else:
            queue = "empty"
        self.stdout.write(f"  queue     {queue}")
        self.stdout.write(f"  cost today  ${panel.cost_today_usd:.2f}")
        for row in panel.decisions[:shown]:
            d = row.decision
            ok = "" if d.ok else f"  FAILED: {d.error}"
            node = f" {d.node.name}" if d.node else ""
            self.stdout.write(f"  {d.at:%Y-%m-%d %H:%M:%S}  {d.action}{node}: {d.reason}{ok}")


def _as_dict(panel, shown: int) -> dict:
    view = panel.view
    return {
        "pool": view.pool.slug,
        "autoscaler_enabled": view.policy.enabled,
        "nodes": [
            {
                "name": n.node.name,
                "state": n.node.state,
                "transition": n.node.transition,
                "health": n.node.health,
                "primary": n.node.is_primary,
            }
            for n in view.nodes
        ],
        "queue": panel.queue.as_dict(),
        "cost_today_usd": str(panel.cost_today_usd.quantize(Decimal("0.000001"))),
        "decisions": [
            {
                "at": r.decision.at.isoformat(),
                "action": r.decision.action,
                "node": r.decision.node.name if r.decision.node else None,
                "reason": r.decision.reason,
                "ok": r.decision.ok,
            }
            for r in panel.decisions[:shown]
        ],
    }
