"""The Celery application. Settings come from Django's settings, prefixed CELERY_."""

import os
import sys

from celery import Celery
from celery.signals import celeryd_after_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def consume_every_pool_queue(sender, instance, **kwargs) -> None:
    """A worker started without -Q also consumes the queues of pools created in the database
    after the settings were written (gpu.<pool> for every node pool)."""
    if any(arg == "-Q" or arg.startswith(("-Q", "--queues")) for arg in sys.argv):
        return
    try:
        from infra_costs.models import NodePool

        slugs = list(NodePool.objects.values_list("slug", flat=True))
    except Exception:  # no database yet (first start before migrate): settings' pools only
        return
    for slug in slugs:
        instance.app.amqp.queues.select_add(f"gpu.{slug}")
