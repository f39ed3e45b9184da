"""Celery worker hooks of the generations app, connected in `GenerationsConfig.ready()`.

Jobs run on the queue of their model's node pool (`gpu.<pool>`). The settings list the pools
known when they were written (GENERATIONS_POOLS); pools created in the database later get a
queue too, which a worker started without -Q must consume.
"""

from __future__ import annotations

import sys


def consume_every_pool_queue(sender=None, instance=None, **kwargs) -> None:
    """`celeryd_after_setup`: a worker started without -Q also consumes gpu.<pool> for every
    node pool in the database."""
    if any(arg == "-Q" or arg.startswith(("-Q", "--queues")) for arg in sys.argv):
        return
    try:
        from infra_costs.models import NodePool

        slugs = list(NodePool.objects.values_list("slug", flat=True))
    except Exception:  # no database yet (first start before migrate): settings' pools only
        return
    for slug in slugs:
        instance.app.amqp.queues.select_add(f"gpu.{slug}")
