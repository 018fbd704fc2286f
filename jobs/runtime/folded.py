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
"""

import re
from typing import Any, cast

from django.db import connection
from django.db.models import Model
from django.db.models.sql import UpdateQuery

from jobs.models import Job, JobEvent, JobStep


def supported() -> bool:
    """Data-modifying CTEs are PostgreSQL's; and a failed statement must not break a
    surrounding transaction (the caller then takes the portable path)."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


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
    query = cast(
        UpdateQuery, Job.objects.filter(pk=job_id, lease_owner=owner).query.chain(UpdateQuery)
    )
    query.add_update_values(update)
    ended, params = query.get_compiler(connection=connection).as_sql()
    parts = [f"ended AS ({ended} RETURNING 1)"]
    params = list(params)
    for name, rows in (("step", [step] if step else []), ("events", events)):
        if rows:
            insert, values = _insert_if(rows, "ended")
            parts.append(f"{name} AS ({insert})")
            params += values
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT count(*) FROM ended", params)
        return bool(cursor.fetchone()[0])


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


def _base_type(field: Any) -> str:
    """`varchar(200)` -> `varchar`, `numeric(10, 2)` -> `numeric`, others as they are."""
    return re.sub(r"\(.*\)", "", str(field.db_type(connection)))
