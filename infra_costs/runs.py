"""Recording live GPU runs (called by the generations app for every job attempt), so live
generations and imported history are one table for cost allocation."""

from __future__ import annotations

from datetime import datetime

from infra_costs.models import GpuRun, Node, NodePool, RunSource, RunStatus


def node_ensure(*, pool: NodePool, name: str) -> Node:
    node, _ = Node.objects.get_or_create(name=name, defaults={"pool": pool})
    if node.pool_id != pool.pk:
        raise ValueError(f"Node {name!r} belongs to pool {node.pool.slug!r}, not {pool.slug!r}.")
    return node


def run_started(
    *, external_id: str, model_slug: str, pool: NodePool, node_name: str, started_at: datetime
) -> GpuRun:
    """A job attempt started on a node. Idempotent per external_id."""
    node = node_ensure(pool=pool, name=node_name)
    run, _ = GpuRun.objects.get_or_create(
        external_id=external_id,
        defaults={
            "model_slug": model_slug,
            "pool": pool,
            "node": node,
            "started_at": started_at,
            "status": RunStatus.RUNNING,
            "source": RunSource.LIVE,
        },
    )
    return run


def run_finished(
    *, external_id: str, status: str, finished_at: datetime, started_at: datetime | None = None
) -> int:
    """The attempt ended (succeeded, failed or cancelled). Only a running run changes, so a
    replay changes nothing. `started_at` corrects the start when the backend knows it better."""
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        raise ValueError(status)
    updates: dict = {"status": status, "finished_at": finished_at}
    if started_at is not None:
        updates["started_at"] = min(started_at, finished_at)
    return GpuRun.objects.filter(external_id=external_id, status=RunStatus.RUNNING).update(
        **updates
    )
