"""The read-only SQL view layer for BI tools: stable `analytics_*` views over the internal
tables (documented column by column in docs/analytics.md). The views are the contract: their
names and columns stay put when the tables behind them change (a later migration that changes
a table recreates the views it touches with the same columns). `manage.py analytics_role`
creates a read-only role granted SELECT on these views only."""

from django.db import migrations

JOB_ID_RE = (
    "^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(#[0-9]+)?$"
)

VIEWS = {
    "analytics_organizations": """
        SELECT o.id AS organization_id, o.slug AS organization, o.name, o.created_at,
               p.slug AS plan, s.status AS subscription_status,
               p.monthly_price_usd AS plan_monthly_price_usd
        FROM accounts_organization o
        LEFT JOIN accounts_subscription s ON s.organization_id = o.id
        LEFT JOIN accounts_plan p ON p.id = s.plan_id
    """,
    "analytics_models": """
        SELECT m.id AS model_id, m.slug AS model, m.name, np.slug AS pool,
               m.external_cost_usd, m.is_active
        FROM generations_aimodel m
        LEFT JOIN infra_costs_nodepool np ON np.id = m.pool_id
    """,
    "analytics_jobs": """
        SELECT j.id AS job_id, j.organization_id, o.slug AS organization, m.slug AS model,
               j.status, j.priority, j.cached, j.attempts, j.node,
               j.credits_held, j.credits_charged, j.error_code,
               j.created_at, j.started_at, j.finished_at,
               EXTRACT(EPOCH FROM (j.finished_at - j.started_at)) AS running_seconds
        FROM generations_job j
        JOIN accounts_organization o ON o.id = j.organization_id
        JOIN generations_aimodel m ON m.id = j.model_id
    """,
    "analytics_ledger_entries": """
        SELECT e.id AS entry_id, a.organization_id, o.slug AS organization,
               e.account_id, e.sequence, e.kind, e.amount, e.balance_delta, e.held_delta,
               e.balance_after, e.held_after, e.grant_id, e.hold_id, e.reason, e.created_at
        FROM credits_ledgerentry e
        JOIN credits_creditaccount a ON a.id = e.account_id
        JOIN accounts_organization o ON o.id = a.organization_id
    """,
    "analytics_gpu_runs": f"""
        SELECT r.id AS run_id, r.external_id,
               CAST(substring(r.external_id FROM '{JOB_ID_RE}') AS uuid) AS job_id,
               r.model_slug AS model, np.slug AS pool, n.name AS node,
               r.started_at, r.finished_at, r.status, r.source,
               EXTRACT(EPOCH FROM (r.finished_at - r.started_at)) AS running_seconds
        FROM infra_costs_gpurun r
        JOIN infra_costs_nodepool np ON np.id = r.pool_id
        JOIN infra_costs_node n ON n.id = r.node_id
    """,
    "analytics_uptime": """
        SELECT u.id AS interval_id, n.name AS node, np.slug AS pool,
               u.started_at, u.ended_at, u.rate_kind, u.source
        FROM infra_costs_uptimeinterval u
        JOIN infra_costs_node n ON n.id = u.node_id
        JOIN infra_costs_nodepool np ON np.id = u.pool_id
    """,
    "analytics_pool_rates": """
        SELECT r.id AS rate_id, np.slug AS pool, np.gpu_type, r.hourly_rate_usd,
               r.warm_hourly_rate_usd, r.spot_hourly_rate_usd, r.effective_from,
               LEAD(r.effective_from) OVER (
                   PARTITION BY r.pool_id ORDER BY r.effective_from, r.id
               ) AS effective_to
        FROM infra_costs_poolrate r
        JOIN infra_costs_nodepool np ON np.id = r.pool_id
    """,
}

CREATE = "\n".join(f"CREATE VIEW {name} AS {sql};" for name, sql in VIEWS.items())
DROP = "\n".join(f"DROP VIEW IF EXISTS {name};" for name in reversed(VIEWS))


class Migration(migrations.Migration):

    dependencies = [
        ("operations", "0003_staff_api_token"),
        ("accounts", "0007_webhooks"),
        ("credits", "0006_usage_holds"),
        ("generations", "0004_job_publish_bookkeeping"),
        ("infra_costs", "0005_schedule_versions"),
    ]

    operations = [migrations.RunSQL(CREATE, reverse_sql=DROP)]
