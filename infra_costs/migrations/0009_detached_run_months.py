"""The record of detached months of GPU runs (`infra_costs.partitions`): their hours are frozen.

`infra_costs_detachedrunmonth` has a row per month taken out of the runs by
`gpu_run_partitions --detach` (written in the detach's transaction, deleted by `--attach`). The
refresh and the report skip the hours [frozen_from, frozen_until) of these months: recomputed,
they would no longer see the detached runs. Not tenant data: no row-level security; the
tenant role's grants come from the default privileges of accounts 0006, as for the other
infra_costs tables.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("infra_costs", "0008_gpurun_node_pool_key"),
    ]

    operations = [
        migrations.CreateModel(
            name="DetachedRunMonth",
            fields=[
                (
                    "month",
                    models.DateField(
                        help_text="The first day of the month (UTC).",
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("table_name", models.CharField(max_length=63)),
                ("dropped", models.BooleanField(default=False, help_text="The table was dropped.")),
                ("detached_at", models.DateTimeField()),
                ("frozen_from", models.DateTimeField()),
                ("frozen_until", models.DateTimeField()),
            ],
        ),
    ]
