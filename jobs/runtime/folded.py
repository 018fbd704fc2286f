"""A run's outcome in one statement, on PostgreSQL: the job's final row, its last step's
record and its buffered events, written together only if the run still holds the lease.

    WITH ended AS (UPDATE job … WHERE id = … AND lease_owner = … RETURNING 1),
         step AS (INSERT INTO jobstep … SELECT … WHERE EXISTS (SELECT 1 FROM ended)),
         events AS (INSERT INTO jobevent … SELECT … WHERE EXISTS (SELECT 1 FROM ended))
    SELECT count(*) FROM ended

A one-step job thus ends in one round trip instead of three. Other databases (SQLite)
write the same rows one statement at a time (`engine.Run.end`).

A new job and its first event are written the same way (`create_job`): one statement,
so outside a transaction one round trip instead of four (BEGIN, two INSERTs, COMMIT).
And what resolves a wait (`resolve`: a decision's row, its checkpoint's new status, the
wait's step, the job's events and its wake-up) is one statement instead of six.
"""

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model

from jobs.models import Job, JobEvent, JobStatus, JobStep, StepStatus

# An UPDATE of `model`'s rows whose fields equal `where`'s values (ANDed), setting `values`.
Update = tuple[type[Model], dict[str, Any], dict[str, Any]]


# Queued, marked sent and read back (PostgreSQL, SQLite >= 3.35): `wake_statement`.
_WAKE_SQL = """
UPDATE {job} SET status = %s, wait_reason = '', wake_at = NULL, last_enqueued_at = %s
WHERE id = %s AND status = %s
RETURNING priority, job_type
"""


def supported() -> bool:
    """Data-modifying CTEs are PostgreSQL's; and a failed statement must not break a
    surrounding transaction (the caller then takes the portable path)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def resolvable() -> bool:
    """`resolve` runs inside the caller's transaction: it fails only as its parts would
    one at a time (a number taken meanwhile is skipped, not an error)."""
    return connection.vendor == "postgresql"


def create_job(job: Job, event: JobEvent) -> None:
    """INSERT a new job and its first event in one statement (PostgreSQL). Raises
    IntegrityError, with nothing written, on a duplicate idempotency key."""
    insert, params = _insert_if([job], "")
    then, more = _insert_if([event], "created")
    with connection.cursor() as cursor:
        cursor.execute(f"WITH created AS ({insert} RETURNING 1) {then}", params + more)
    for row in (job, event):
        row._state.adding, row._state.db = False, connection.alias


def end_run(
    *,
    job_id: Any,
    owner: str,
    update: dict[str, Any],
    step: JobStep | None,
    events: list[JobEvent],
) -> bool:
    """Write it all if the lease is still `owner`'s; False (nothing written) if not.
    Raises IntegrityError, with nothing written, if an event's number was taken."""
    ended, params = update_statement(Job, {"pk": job_id, "lease_owner": owner}, update)
    parts = [f"ended AS ({ended} RETURNING 1)"]
    for name, rows in (("step", [step] if step else []), ("events", events)):
        if rows:
            insert, values = _insert_if(rows, "ended")
            parts.append(f"{name} AS ({insert})")
            params += values
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT count(*) FROM ended", params)
        return bool(cursor.fetchone()[0])


def wake_statement(job_id: Any, now: datetime) -> tuple[str, list[Any]]:
    """The UPDATE that makes a waiting job queued; it returns (priority, job_type), or no
    row if the job was not waiting."""
    sql = _WAKE_SQL.format(job=connection.ops.quote_name(Job._meta.db_table))
    return sql, [
        JobStatus.QUEUED,
        connection.ops.adapt_datetimefield_value(now),
        Job._meta.pk.get_db_prep_value(uuid.UUID(str(job_id)), connection),
        JobStatus.WAITING,
    ]


def waiting_step_update(job_id: Any, key: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """The UPDATE that sets `values` on the job's step `key` if it is waiting and so is its
    job, written by hand: the ORM's (a join to the job, made a subquery) took longer to
    build than the whole decision's statement to run. Standard SQL, for every database."""
    quote = connection.ops.quote_name
    fields = [JobStep._meta.get_field(name) for name in values]
    assignments = ", ".join(f"{quote(str(f.column))} = %s" for f in fields)  # type: ignore[union-attr]
    pk = Job._meta.pk.get_db_prep_value(uuid.UUID(str(job_id)), connection)
    step, job = quote(JobStep._meta.db_table), quote(Job._meta.db_table)
    job_id_, key_, status, id_ = (quote(c) for c in ("job_id", "key", "status", "id"))
    sql = (
        f"UPDATE {step} SET {assignments} WHERE {job_id_} = %s AND {key_} = %s"
        f" AND {status} = %s AND EXISTS (SELECT 1 FROM {job} WHERE {id_} = %s AND {status} = %s)"
    )
    params = [
        f.get_db_prep_save(value, connection)  # type: ignore[union-attr]
        for f, value in zip(fields, values.values(), strict=True)
    ]
    return sql, [*params, pk, key, StepStatus.WAITING, pk, JobStatus.WAITING]


def resolve(
    *,
    job_id: Any,
    rows: Sequence[Model],
    updates: Sequence[Update],
    statements: Sequence[tuple[str, list[Any]]] = (),
    events: list[JobEvent],
    woken: JobEvent | None,
) -> tuple[int, str] | None:
    """In one statement (PostgreSQL): INSERT `rows` (their pks are set), apply `updates`
    and the UPDATEs `statements` (SQL and parameters), wake the job if `woken` is given
    (and add that event only if the job was waiting), and append `events` after the job's
    last one. Returns the wake's (priority, job_type), or None if the job was not woken.
    An event whose number another writer took meanwhile is not written and keeps `pk`
    None (`resolve_wait` then writes them all again)."""
    quote = connection.ops.quote_name
    parts: list[str] = []
    params: list[Any] = []
    for i, row in enumerate(rows):
        insert, values = _insert_if([row], "")
        parts.append(f"r{i} AS ({insert} RETURNING {quote(str(row._meta.pk.column))})")
        params += values
    for i, (model, where, changes) in enumerate(updates):
        update, values = update_statement(model, where, changes)
        parts.append(f"u{i} AS ({update})")
        params += values
    for i, (update, values) in enumerate(statements):
        parts.append(f"s{i} AS ({update})")
        params += values
    woke = "false"
    if woken is not None:
        wake, values = wake_statement(job_id, woken.created_at)
        parts.append(f"woke AS ({wake})")
        params += values
        woke = "EXISTS (SELECT 1 FROM woke)"
    written = [*events, *([woken] if woken is not None else [])]
    numbering = "0, NULL"
    if written:
        sql, values = _append_events(job_id, written, woken, woke)
        parts += sql
        params += values
        numbering = "(SELECT seq FROM last), (SELECT array_agg(ARRAY[id, seq]) FROM events)"
    returned = ", ".join(f"(SELECT * FROM r{i})" for i in range(len(rows)))
    wake_row = "(SELECT priority FROM woke), (SELECT job_type FROM woke)" if woken else "NULL, NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(parts)} SELECT {returned + ', ' if rows else ''}{wake_row},"
            f" {numbering}",
            params,
        )
        *pks, priority, job_type, last, numbered = cursor.fetchone()
    for row, pk in zip(rows, pks, strict=True):
        row.pk, row._state.adding, row._state.db = pk, False, connection.alias
    ids = {seq: pk for pk, seq in numbered or []}
    for n, event in enumerate(written, last + 1):
        if n in ids:
            event.pk, event.seq, event._state.adding = ids[n], n, False
    return None if priority is None else (priority, job_type)


def _append_events(
    job_id: Any, written: list[JobEvent], woken: JobEvent | None, woke: str
) -> tuple[list[str], list[Any]]:
    """`resolve`'s CTEs `last` (the job's last event number) and `events` (the INSERT of
    `written`, numbered after it in order; `woken` only if `woke` holds)."""
    quote = connection.ops.quote_name
    table = quote(JobEvent._meta.db_table)
    fields = [JobEvent._meta.get_field(name) for name in ("job", "kind", "data", "created_at")]
    params = [fields[0].get_db_prep_save(job_id, connection)]  # type: ignore[union-attr]
    casts = ", ".join(f"CAST(%s AS {_base_type(f)})" for f in fields)
    values_sql = ", ".join(
        f"({casts}, {n}, {'true' if event is woken else 'false'})"
        for n, event in enumerate(written, 1)
    )
    for event in written:
        params += [
            f.get_db_prep_save(getattr(event, f.attname), connection)  # type: ignore[union-attr]
            for f in fields
        ]
    columns = ", ".join(quote(str(f.column)) for f in fields)  # type: ignore[union-attr]
    return [
        f"last AS (SELECT COALESCE(MAX(seq), 0) AS seq FROM {table} WHERE job_id = %s)",
        f"events AS (INSERT INTO {table} ({columns}, seq)"
        f" SELECT v.job, v.kind, v.data, v.at, last.seq + v.n"
        f" FROM (VALUES {values_sql}) AS v(job, kind, data, at, n, woken), last"
        f" WHERE NOT v.woken OR {woke}"
        f" ON CONFLICT (job_id, seq) DO NOTHING RETURNING id, seq)",
    ], params


def update_statement(
    model: type[Model], where: dict[str, Any], values: dict[str, Any]
) -> tuple[str, list[Any]]:
    """The UPDATE `model.objects.filter(**where).update(**values)` would run, not run,
    for plain field names and values (`pk` names the primary key). Written by hand: the
    ORM took 0.3 ms to build it, more than it takes to run (as `.update()`, it leaves
    `auto_now` fields alone)."""
    if not values or not where:
        raise ValueError("an UPDATE needs values to set and a condition")
    if any(value is None for value in where.values()):
        raise ValueError("a condition `= NULL` matches nothing")
    if any(
        isinstance(v, Model) or hasattr(v, "resolve_expression")
        for v in (*values.values(), *where.values())
    ):
        raise ValueError("plain values only: no expressions or model instances (use their pk)")
    sql, fields = _update_plan(connection.vendor, model, tuple(values), tuple(where))
    params = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(fields, (*values.values(), *where.values()), strict=True)
    ]
    return sql, params


@cache
def _update_plan(
    vendor: str, model: type[Model], names: tuple[str, ...], keys: tuple[str, ...]
) -> tuple[str, list[Any]]:
    """The UPDATE's SQL, and the fields of its parameters in order (set, then where)."""
    fields: list[Any] = [
        model._meta.pk if n == "pk" else model._meta.get_field(n) for n in (*names, *keys)
    ]
    columns = [connection.ops.quote_name(str(field.column)) for field in fields]
    sets = ", ".join(f"{column} = %s" for column in columns[: len(names)])
    conditions = " AND ".join(f"{column} = %s" for column in columns[len(names) :])
    return (
        f"UPDATE {connection.ops.quote_name(model._meta.db_table)} SET {sets} WHERE {conditions}",
        fields,
    )


def _insert_if(rows: list[Any], cte: str) -> tuple[str, list[Any]]:
    """INSERT the model instances `rows`, only if the CTE named `cte` (if any) returned a
    row, with the values Django would write for them."""
    model: type[Model] = type(rows[0])
    # Every column but a serial id (a job's UUID is made in Python, like its other values).
    fields = [f for f in model._meta.concrete_fields if f is not model._meta.auto_field]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in fields)
    # Typed placeholders: in a VALUES list a NULL (a step that returned None) is text. The
    # type without its modifier: CAST(… AS varchar(200)) would cut a longer value short
    # where the column's own assignment refuses it, as the ORM's INSERT does.
    row = "(" + ", ".join(f"CAST(%s AS {_base_type(f)})" for f in fields) + ")"
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in rows for f in fields]
    table = quote(model._meta.db_table)
    condition = f" WHERE EXISTS (SELECT 1 FROM {cte})" if cte else ""
    return (
        f"INSERT INTO {table} ({columns}) SELECT * FROM (VALUES {', '.join([row] * len(rows))})"
        f" AS v{condition}",
        params,
    )


@cache
def _base_type(field: Any) -> str:
    """`varchar(200)` -> `varchar`, `numeric(10, 2)` -> `numeric`, others as they are."""
    return re.sub(r"\(.*\)", "", str(field.db_type(connection)))
