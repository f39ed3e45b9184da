"""The status log of a job: one `JobEvent` row per transition, written in the transition's own
transaction by every verb of the lifecycle. A terminal success or failure also writes the
`generation.succeeded` / `generation.failed` webhook event to the outbox, in that transaction."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache

from django.db import connections, router
from django.db.models import Q
from django.db.models.sql import InsertQuery, UpdateQuery

from accounts.webhooks.models import EventType
from accounts.webhooks.services import webhook_event_emit
from generations.models import Job, JobEvent, JobStatus

CREDIT_PLACES = Decimal("0.001")
WEBHOOK_EVENTS = {
    JobStatus.SUCCEEDED: EventType.GENERATION_SUCCEEDED,
    JobStatus.FAILED: EventType.GENERATION_FAILED,
}


def _credits(amount) -> str | None:
    return None if amount is None else str(Decimal(amount).quantize(CREDIT_PLACES))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def job_webhook_payload(job: Job) -> dict:
    """The job as the API shows it (`GET /api/v1/generations/{id}/`), less its params."""
    failed = job.status == JobStatus.FAILED
    return {
        "id": str(job.pk),
        "status": job.status,
        "model": job.model.slug,
        "credits_held": _credits(job.credits_held),
        "credits_charged": _credits(job.credits_charged),
        "cached": job.cached,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "result": None if failed else job.result,
        "error": (
            {"code": job.error_code or "failed", "message": job.error or ""} if failed else None
        ),
    }


def _webhook_for(job: Job, status: str) -> None:
    """The outbound webhook event of a terminal status (once per job and status)."""
    webhook_type = WEBHOOK_EVENTS.get(status)
    if webhook_type is not None and job.status == status:
        webhook_event_emit(
            organization=job.organization,
            type=webhook_type,
            payload=job_webhook_payload(job),
            dedupe_key=f"job:{job.pk}:{status}",
        )


def job_event_add(
    job: Job, status: str, *, at: datetime, message: str = "", worker: str = ""
) -> JobEvent:
    event = JobEvent.objects.create(
        job=job, status=status, at=at, node=job.node, worker=worker[:255], message=message[:1000]
    )
    _webhook_for(job, status)
    return event


def job_insert_with_event(job: Job, status: str, *, at: datetime, message: str = "") -> None:
    """INSERT the new `job` (its primary key set in Python, no signals listen to Job) and its
    first status log row in one statement: a CTE whose job INSERT feeds the event INSERT, one
    round trip instead of two (the submission's path). What `Job.objects.create` followed by
    `job_event_add` write, for a status without a webhook event (a new job is never
    terminal: the cached path, which is, keeps the two calls)."""
    if status in WEBHOOK_EVENTS:
        raise ValueError("A terminal status writes a webhook event too: use job_event_add.")
    using = router.db_for_write(Job, instance=job)
    connection = connections[using]
    fields = Job._meta.concrete_fields
    # What SQLInsertCompiler does per field (pre_save with add=True, then the DB preparation);
    # plain values (the submission's) use a fixed statement, not compiled each time (issue 16).
    values = [f.pre_save(job, True) for f in fields]
    if any(
        hasattr(v, "resolve_expression") or hasattr(f, "get_placeholder")
        for f, v in zip(fields, values, strict=True)
    ):
        query = InsertQuery(Job)
        query.insert_values(list(fields), [job])
        [(job_sql, job_params)] = query.get_compiler(using=using).as_sql()
    else:
        job_sql = _insert_sql(using)
        job_params = [
            f.get_db_prep_save(v, connection) for f, v in zip(fields, values, strict=True)
        ]
    table = connection.ops.quote_name(JobEvent._meta.db_table)
    job_id = connection.ops.quote_name(Job._meta.pk.column)
    sql = (
        f"WITH new_job AS ({job_sql} RETURNING {job_id}) "
        f'INSERT INTO {table} ("job_id", "status", "at", "node", "worker", "message") '
        f"SELECT {job_id}, %s, %s, %s, %s, %s FROM new_job"
    )
    at_db = JobEvent._meta.get_field("at").get_db_prep_save(at, connection)
    params = (*job_params, status, at_db, job.node, "", message[:1000])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    job._state.adding = False
    job._state.db = using


@cache
def _insert_sql(using: str) -> str:
    """`INSERT INTO job (<every concrete column>) VALUES (%s, …)`: what the ORM compiles for one
    row of plain values."""
    quote = connections[using].ops.quote_name
    columns = ", ".join(quote(f.column) for f in Job._meta.concrete_fields)
    placeholders = ", ".join(["%s"] * len(Job._meta.concrete_fields))
    return f"INSERT INTO {quote(Job._meta.db_table)} ({columns}) VALUES ({placeholders})"


@cache
def _update_sql(using: str, update_fields: tuple[str, ...]) -> str:
    """`UPDATE job SET <field> = %s, … WHERE id = %s`: what the ORM compiles for plain values."""
    quote = connections[using].ops.quote_name
    table = quote(Job._meta.db_table)
    sets = ", ".join(f"{quote(Job._meta.get_field(name).column)} = %s" for name in update_fields)
    return f"UPDATE {table} SET {sets} WHERE {table}.{quote(Job._meta.pk.column)} = %s"


def job_save_with_event(
    job: Job,
    *,
    update_fields: list[str],
    status: str,
    at: datetime,
    message: str = "",
    worker: str = "",
) -> None:
    """`job.save(update_fields=…)` and `job_event_add(job, status, …)` in one round trip: the
    job's UPDATE and its status-log INSERT as one statement (a data-modifying CTE), for the
    worker path (issue 16). The job is locked by the caller; the event row is written only when
    the UPDATE found the job. Same webhook event as `job_event_add`."""
    using = router.db_for_write(Job, instance=job)
    connection = connections[using]
    fields = [Job._meta.get_field(name) for name in update_fields]
    saved = [(f, f.pre_save(job, False)) for f in fields]
    if any(hasattr(value, "resolve_expression") for _, value in saved):  # e.g. an F(): the ORM
        query = UpdateQuery(Job)
        query.add_update_fields([(f, None, value) for f, value in saved])
        query.add_q(Q(pk=job.pk))
        update_sql, update_params = query.get_compiler(using=using).as_sql()
    else:  # plain values (the worker's): a fixed statement, not compiled each time (issue 16)
        update_sql = _update_sql(using, tuple(update_fields))
        update_params = [
            *(f.get_db_prep_save(value, connection) for f, value in saved),
            Job._meta.pk.get_db_prep_value(job.pk, connection),
        ]
    event = JobEvent._meta
    columns = ("status", "at", "node", "worker", "message")
    values = (status, at, job.node, worker[:255], message[:1000])
    params = [
        event.get_field(name).get_db_prep_save(value, connection)
        for name, value in zip(columns, values, strict=True)
    ]
    job_table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH u AS ({update_sql} RETURNING {job_table}.id) "
            f"INSERT INTO {connection.ops.quote_name(event.db_table)} "
            f"(job_id, {', '.join(columns)}) "
            f"SELECT u.id, {', '.join(['%s'] * len(columns))} FROM u",
            (*update_params, *params),
        )
    _webhook_for(job, status)
