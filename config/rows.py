"""Fixed statements on hot paths without Django's SQL compiler (issue 16).

Compiling an ORM query costs more Python time than running it on a submission (about a
third of the request's CPU went to compiling four SELECTs). A statement whose text never
changes is written once (SQL text, built once per process) and its rows become model
instances as the ORM builds them (`from_db`, with the fields' own conversions). They run
through Django's cursor, so Django's query log (`django_assert_num_queries`) counts them.
Imports no app.
"""

from __future__ import annotations

from functools import cache

from django.db import connection
from django.db.models import Model


def execute(sql: str, params, *, rows: bool = True) -> list[tuple]:
    """One statement's rows (a list of tuples; [] with `rows` False: an UPDATE), through
    Django's cursor (its query log, its errors, its execute wrappers). Not prepared: measured
    on the submission's statements, a prepared generic plan cost PostgreSQL as much or more
    CPU than planning each time (issue 16); the Python saved is the ORM's compiler."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if rows else []


def columns(model: type[Model], alias: str) -> str:
    """`alias.column, …` for every concrete field of `model`, in `_meta` order (what
    `instance` reads)."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


@cache
def _plan(model: type[Model]) -> tuple[list[str], list[tuple[int, object]]]:
    """The attnames `from_db` takes and the fields with a conversion from the database."""
    fields = model._meta.concrete_fields
    converters = [(i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    return [f.attname for f in fields], converters


def instance(model: type[Model], values) -> Model:
    """A saved instance of `model` from its concrete columns' values (`columns` order), with
    the fields' conversions from the database (a JSONField's text) as the ORM applies them."""
    attnames, converters = _plan(model)
    values = list(values)
    if len(values) != len(attnames):
        raise ValueError(f"{model.__name__}: {len(values)} values for {len(attnames)} columns")
    for i, field in converters:
        values[i] = field.from_db_value(values[i], None, connection)
    return model.from_db(connection.alias, attnames, values)


def instances(models: tuple[type[Model], ...], row) -> list[Model | None]:
    """A joined row (`columns` of each model in turn) as one instance per model; None for a
    model whose primary key is NULL (an outer join that found nothing)."""
    out, at = [], 0
    for model in models:
        values = row[at : at + width(model)]
        at += width(model)
        pk_index = model._meta.concrete_fields.index(model._meta.pk)
        out.append(instance(model, values) if values[pk_index] is not None else None)
    return out
