"""One row by its primary key, read with a statement written once per model and column set.

For the panel's hottest path only: every open operation page asks for its progress fragment
once a second, and each request loads its user. Building the same SELECT through the ORM on
each request cost several times the query itself (bench/progress_pollers.py). The values go
through the converters Django applies, into a normal model instance; fields left out are
deferred, as with `only()`, and load on first use. Identifiers come from the models' own
metadata, quoted by the database backend; values are always parameters.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from django.db import connections, models, router

M = TypeVar("M", bound=models.Model)


def row_by_pk(
    model: type[M],
    pk: Any,
    without: tuple[str, ...] = (),
    extra: tuple[str, str] | None = None,
    extra_params: tuple = (),
) -> M | None:
    """The row as a model instance, or None. `extra` is (attribute, SQL expression): one
    more column, read into that attribute, with `extra_params` for its placeholders."""
    alias = router.db_for_read(model)
    connection = connections[alias]
    sql, names, converters = _statement(model, alias, without, extra)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*extra_params, pk])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, field_converters, column in converters:
        for converter in field_converters:
            values[index] = converter(values[index], column, connection)
    instance = model.from_db(alias, names, values[: len(names)])
    if extra is not None:
        setattr(instance, extra[0], values[len(names)])
    return instance


@cache
def _statement(model, alias: str, without: tuple[str, ...], extra: tuple[str, str] | None):
    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    fields = [field for field in model._meta.concrete_fields if field.name not in without]
    columns = [f"{table}.{quote(field.column)}" for field in fields]
    if extra is not None:
        columns.append(f"{extra[1]} AS {quote(extra[0])}")
    key = quote(model._meta.pk.column)
    sql = f"SELECT {', '.join(columns)} FROM {table} WHERE {table}.{key} = %s"  # noqa: S608
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, found, column))
    return sql, [field.attname for field in fields], converters


def distinct_values(model: type[models.Model], field: str, by: str, value: Any) -> list:
    """The distinct values of `field` in the rows whose `by` column is `value`: the stages an
    ended operation's timeline entered, which its last poll shows in the stepper."""
    alias = router.db_for_read(model)
    connection = connections[alias]
    sql = _distinct_statement(model, alias, field, by)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value])
        return [row[0] for row in cursor.fetchall()]


@cache
def _distinct_statement(model, alias: str, field: str, by: str) -> str:
    quote = connections[alias].ops.quote_name
    column, key = model._meta.get_field(field), model._meta.get_field(by)
    if column.get_db_converters(connections[alias]):
        raise ValueError(f"{model.__name__}.{field} needs converters; read it through the ORM")
    table = quote(model._meta.db_table)
    return (  # identifiers from the model, quoted; the value is a parameter
        f"SELECT DISTINCT {quote(column.column)} FROM {table} "  # noqa: S608
        f"WHERE {quote(key.column)} = %s"
    )
