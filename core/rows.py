"""Model instances from rows that hand-written SQL read, converted as the ORM would.

For statements the ORM cannot write (a claim's UPDATE … RETURNING, a lock's join), or
takes longer to build than the database to run."""

from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


def instance(model: type[M], fields: Sequence["Field[Any, Any]"], values: Iterator[Any]) -> M:
    """The instance of `model` whose `fields` (in concrete-field order) the next values
    of `values` are, converted as the ORM converts them (a JSON column's text, SQLite's
    datetimes): what `Model.from_db` makes of a queryset's row."""
    converted = []
    converters_of = _converters(connection.vendor, tuple(fields))
    for (field, converters), value in zip(converters_of, values, strict=False):
        for convert in converters:
            value = convert(value, field.cached_col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


@cache
def _converters(
    vendor: str, fields: tuple["Field[Any, Any]", ...]
) -> list[tuple["Field[Any, Any]", list[Converter]]]:
    """Each field's converters, looked up once per database vendor."""
    return [
        (f, [*connection.ops.get_db_converters(f.cached_col), *f.get_db_converters(connection)])
        for f in fields
    ]
