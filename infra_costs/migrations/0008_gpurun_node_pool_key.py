"""One composite foreign key for the GPU runs' node and pool (issue 16).

The runs had two deferred foreign keys, `node_id → infra_costs_node` and `pool_id →
infra_costs_nodepool`: each row written pays two checks at COMMIT (an import of 1M rows: ~2M
checks, 8-25 s). They become one, `(node_id, pool_id) → infra_costs_node (id, pool_id)`, deferred
as before: half the checks, and it says more (a run's pool is its node's pool, which the
writers already ensure: both take the pool from the node). The pool is still referenced through
the node (`Node.pool` is a PROTECT foreign key). `infra_costs_node` gets the unique key
`(id, pool_id)` it needs. Django's `ForeignKey`s stay (ORM, PROTECT) with `db_constraint=False`.

The external ids' key table (`infra_costs_gpurunkey`, 0007), which an import fills with 1M ids
at a time, takes the collation "C" (byte order; equality is the same, as the database's
collation is deterministic) and loses the `varchar_pattern_ops` index Django adds to a varchar
primary key (nothing matches patterns on it): the claim of 1M ids ~40 % faster. The trigger
freeing the ids of deleted runs compares in "C" (the runs' column keeps its collation).

Reversible: the reverse puts the two keys back under their old names, the key table's
collation and index and the trigger as they were.
"""

import django.db.models.deletion
from django.db import migrations, models

T = "infra_costs_gpurun"
NODE_FK = "infra_costs_gpurun_node_id_598d7b7f_fk_infra_costs_node_id"
POOL_FK = "infra_costs_gpurun_pool_id_240ab692_fk_infra_costs_nodepool_id"
FK = "gpurun_node_pool_fk"

FORWARD = f"""
ALTER TABLE {T} DROP CONSTRAINT {NODE_FK};
ALTER TABLE {T} DROP CONSTRAINT {POOL_FK};
ALTER TABLE {T} ADD CONSTRAINT {FK} FOREIGN KEY (node_id, pool_id)
    REFERENCES infra_costs_node (id, pool_id) DEFERRABLE INITIALLY DEFERRED;
"""

BACKWARD = f"""
ALTER TABLE {T} DROP CONSTRAINT {FK};
ALTER TABLE {T} ADD CONSTRAINT {NODE_FK}
    FOREIGN KEY (node_id) REFERENCES infra_costs_node(id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {T} ADD CONSTRAINT {POOL_FK}
    FOREIGN KEY (pool_id) REFERENCES infra_costs_nodepool(id) DEFERRABLE INITIALLY DEFERRED;
"""


KEY_LIKE = "infra_costs_gpurunkey_external_id_fd507c4f_like"
KEY_FREE = """
CREATE OR REPLACE FUNCTION infra_costs_run_key_free() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN  -- (not TRUNCATE: the statement may be truncating it too)
        DELETE FROM infra_costs_gpurunkey;
    ELSE
        DELETE FROM infra_costs_gpurunkey k USING old_rows o
        WHERE k.external_id = o.external_id{collate};
    END IF;
    RETURN NULL;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("infra_costs", "0007_gpurun_monthly_partitions"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="node",
            constraint=models.UniqueConstraint(fields=("id", "pool"), name="node_id_pool_unique"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="gpurun",
                    name="node",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="runs",
                        to="infra_costs.node",
                    ),
                ),
                migrations.AlterField(
                    model_name="gpurun",
                    name="pool",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="runs",
                        to="infra_costs.nodepool",
                    ),
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
        migrations.AlterField(
            model_name="gpurunkey",
            name="external_id",
            field=models.CharField(
                db_collation="C", max_length=128, primary_key=True, serialize=False
            ),
        ),
        migrations.RunSQL(
            f"DROP INDEX IF EXISTS {KEY_LIKE};" + KEY_FREE.format(collate=' COLLATE "C"'),
            f"CREATE INDEX IF NOT EXISTS {KEY_LIKE} ON infra_costs_gpurunkey "
            "(external_id varchar_pattern_ops);" + KEY_FREE.format(collate=""),
        ),
    ]
