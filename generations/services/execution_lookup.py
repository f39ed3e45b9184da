"""The worker's two row-locking SELECTs as fixed statements (issue 16, `config.rows`): the
claim's and the finish's. Compiling them with the ORM (select_related over four tables, an
EXISTS annotation) cost more Python time than anything else a worker does per job.

- `job_locked_for_claim`: what `Job.objects.select_for_update(of=("self",))
  .select_related("model", "model__pool", "organization", "hold")
  .annotate(pool_managed=fleet.pool_managed("model__pool_id")).get(pk=…)` gives.
- `job_locked_for_finish`: what `Job.objects.select_for_update(of=("self",))
  .select_related("model", "organization", "hold", "rate").get(pk=…)` gives.

Same columns, joins and row lock (`FOR UPDATE OF` the job's table only), and the related
instances cached on the job as `select_related` caches them (a NULL hold, rate or pool is
cached as None; the hold's reverse one-to-one `job` is set). They run through Django's cursor:
its query log counts them. tests/generations/test_execution_lookup.py checks both against the
ORM's queries.
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from accounts.models import Organization
from config.rows import columns, execute, instances
from credits.models import CreditHold
from generations.models import AIModel, CreditRate, Job
from infra_costs.models import AutoscalePolicy, NodePool

_CLAIM_MODELS = (Job, AIModel, NodePool, Organization, CreditHold)
_FINISH_MODELS = (Job, AIModel, Organization, CreditHold, CreditRate)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@cache
def _claim_sql() -> str:
    # `pool_managed`: `fleet.pool_managed` (an enabled autoscale policy for the model's pool).
    return (
        f"SELECT {columns(Job, 'j')}, {columns(AIModel, 'm')}, {columns(NodePool, 'p')}, "
        f"{columns(Organization, 'o')}, {columns(CreditHold, 'h')}, "
        f"EXISTS (SELECT 1 FROM {_table(AutoscalePolicy)} a "
        "WHERE a.enabled AND a.pool_id = m.pool_id) "
        f"FROM {_table(Job)} j "
        f"JOIN {_table(AIModel)} m ON m.id = j.model_id "
        f"LEFT JOIN {_table(NodePool)} p ON p.id = m.pool_id "
        f"JOIN {_table(Organization)} o ON o.id = j.organization_id "
        f"LEFT JOIN {_table(CreditHold)} h ON h.id = j.hold_id "
        "WHERE j.id = %s FOR UPDATE OF j"
    )


@cache
def _finish_sql() -> str:
    return (
        f"SELECT {columns(Job, 'j')}, {columns(AIModel, 'm')}, {columns(Organization, 'o')}, "
        f"{columns(CreditHold, 'h')}, {columns(CreditRate, 'r')} "
        f"FROM {_table(Job)} j "
        f"JOIN {_table(Organization)} o ON o.id = j.organization_id "
        f"JOIN {_table(AIModel)} m ON m.id = j.model_id "
        f"LEFT JOIN {_table(CreditRate)} r ON r.id = j.rate_id "
        f"LEFT JOIN {_table(CreditHold)} h ON h.id = j.hold_id "
        "WHERE j.id = %s FOR UPDATE OF j"
    )


@cache
def _relations():
    field = Job._meta.get_field
    return (
        field("model"),
        field("organization"),
        field("hold"),
        field("rate"),
        AIModel._meta.get_field("pool"),
    )


def _job_with(job: Job, model, organization, hold) -> Job:
    model_field, organization_field, hold_field, _, _ = _relations()
    model_field.set_cached_value(job, model)
    organization_field.set_cached_value(job, organization)
    hold_field.set_cached_value(job, hold)
    if hold is not None:
        hold_field.remote_field.set_cached_value(hold, job)  # hold.job, as select_related
    return job


def job_locked_for_claim(job_id) -> Job | None:
    """The job `job_id`, locked (FOR UPDATE OF its row), with its model, the model's pool, its
    organization and its hold loaded, and `pool_managed`: whether the pool is fleet-managed.
    None when there is no such job. In the caller's transaction; one statement."""
    pk = Job._meta.pk.to_python(job_id)  # a malformed id fails as the ORM's `get` does
    rows = execute(_claim_sql(), [pk])
    if not rows:
        return None
    row = rows[0]
    job, model, pool, organization, hold = instances(_CLAIM_MODELS, row[:-1])
    _relations()[4].set_cached_value(model, pool)
    job.pool_managed = row[-1]
    return _job_with(job, model, organization, hold)


def job_locked_for_finish(job_id) -> Job | None:
    """The job `job_id`, locked (FOR UPDATE OF its row), with its model, organization, hold and
    pinned rate loaded. None when there is no such job. In the caller's transaction; one
    statement."""
    pk = Job._meta.pk.to_python(job_id)
    rows = execute(_finish_sql(), [pk])
    if not rows:
        return None
    job, model, organization, hold, rate = instances(_FINISH_MODELS, rows[0])
    _relations()[3].set_cached_value(job, rate)
    return _job_with(job, model, organization, hold)
