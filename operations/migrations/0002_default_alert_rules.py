"""The default alert rules of issue 11: queue depth > 10 / > 30 jobs, priority wait > 30 / > 60 s,
node degraded / down, GPU utilization < 20 % over 1 h / < 10 % over 2 h, cost per day > $20 /
> $30. Editable in the admin afterwards; re-running never overwrites an edited rule."""

from decimal import Decimal

from django.db import migrations

RULES = [
    {
        "key": "queue_depth",
        "name": "Queue depth",
        "description": "Jobs queued in a pool (unit: jobs).",
        "warning_threshold": Decimal("10"),
        "critical_threshold": Decimal("30"),
    },
    {
        "key": "priority_wait",
        "name": "Priority job wait",
        "description": "How long the oldest pro-or-above job of a pool has waited (unit: seconds).",
        "warning_threshold": Decimal("30"),
        "critical_threshold": Decimal("60"),
    },
    {
        "key": "node_health",
        "name": "Node health",
        "description": "A managed node reported degraded (warning) or down (critical).",
        "warning_threshold": None,
        "critical_threshold": None,
    },
    {
        "key": "gpu_utilization",
        "name": "GPU utilization",
        "description": "Busy share of a pool's running uptime over the window (unit: a fraction, "
        "0.20 = 20 %; windows in seconds).",
        "warning_threshold": Decimal("0.20"),
        "critical_threshold": Decimal("0.10"),
        "warning_window_s": 3600,
        "critical_window_s": 7200,
    },
    {
        "key": "cost_per_day",
        "name": "Cost per day",
        "description": "A pool's cost so far today, UTC (unit: USD).",
        "warning_threshold": Decimal("20"),
        "critical_threshold": Decimal("30"),
    },
]


def create_rules(apps, schema_editor):
    AlertRule = apps.get_model("operations", "AlertRule")
    for fields in RULES:
        AlertRule.objects.get_or_create(key=fields["key"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("operations", "0001_initial")]

    operations = [migrations.RunPython(create_rules, migrations.RunPython.noop)]
