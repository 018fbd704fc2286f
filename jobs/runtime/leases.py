"""Job leases: a run owns its job row for a while, renewing as it goes.

A second delivery of the same message (Redis visibility timeout, a reconciler
re-send) finds the lease taken and does nothing.
"""

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.rows import instance
from jobs.models import Job, JobEvent, JobStatus, JobStep


@dataclass(frozen=True)
class Claim:
    """A job whose lease this run now holds, with what the claim read alongside."""

    job: Job
    last_event_seq: int  # the run numbers its events after this
    has_steps: bool  # False on a first run: no need to load its steps
    steps: list[JobStep] | None = None  # read with the claim (PostgreSQL), in order

    def recorded_steps(self) -> list[JobStep]:
        """The job's recorded steps in position order: as the claim read them, or in
        one query if it has any."""
        if self.steps is not None:
            return self.steps
        return list(JobStep.objects.filter(job_id=self.job.pk)) if self.has_steps else []


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_expiry() -> datetime:
    return timezone.now() + timedelta(seconds=settings.COUNTERSIGN_LEASE_SECONDS)


_CLAIM_SQL = """
UPDATE {job} SET
    status = %(running)s, lease_owner = %(owner)s, lease_expires_at = %(expires)s,
    updated_at = %(now)s, started_at = COALESCE(started_at, %(now)s),
    wait_reason = '', wake_at = NULL,
    attempts = CASE WHEN attempts = 0 THEN 1 WHEN status = %(running)s THEN attempts + 1
                    ELSE attempts END
WHERE {claimable}
RETURNING {columns},
    (SELECT COALESCE(MAX(seq), 0) FROM {event} WHERE job_id = {job}.id) AS last_event_seq,
    {steps} AS claimed_steps{relaxed}
"""
# Elsewhere: whether there are steps to read after the claim.
_HAS_STEPS = "EXISTS (SELECT 1 FROM {step} WHERE job_id = {job}.id)"
# PostgreSQL: the steps themselves, as JSON (NULL if none).
_STEPS_JSON = "(SELECT json_agg(s ORDER BY s.position) FROM {step} s WHERE s.job_id = {job}.id)"
# PostgreSQL, outside a transaction: the claim's commit does not wait for its WAL flush (an
# fsync, a third of the claim's time here). Safe because a lease protects nothing durable
# yet: a crash of the server can only lose the claim with everything after it (the run's
# first durable write flushes the WAL up to it), and the job is then claimable again, as
# if its run had died before its first step ended.
_RELAXED = ",\n    set_config('synchronous_commit', 'off', true) AS relaxed_commit"


def claim(job_id: str, owner: str) -> Claim | None:
    """Take the job's lease; None if it is not ours to run.

    One conditional UPDATE … RETURNING (PostgreSQL, SQLite ≥ 3.35) takes the lease and
    reads the row, its last event number and its steps (elsewhere: whether it has any)
    in one round trip, turned into a Job by hand (`raw()` took a third of a millisecond
    more).
    Which jobs it may take is `Job.objects.claimable`, compiled into the statement, so
    the rule is written once. Taking over an abandoned run (its worker died) counts as
    a failed attempt, so a step that always kills its worker cannot loop forever.
    """
    try:
        pk = uuid.UUID(str(job_id))
    except ValueError:
        return None
    relaxed = connection.get_autocommit() and not connection.in_atomic_block
    sql, constants = _statement(connection.vendor, relaxed=relaxed)
    adapt = connection.ops.adapt_datetimefield_value
    params = {
        **constants,
        "pk": Job._meta.pk.get_db_prep_value(pk, connection),
        "running": JobStatus.RUNNING,
        "owner": owner,
        "expires": adapt(lease_expiry()),
        "now": adapt(timezone.now()),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = iter(row)
    job = instance(Job, Job._meta.concrete_fields, values)
    last_event_seq, steps = int(next(values)), next(values)
    if isinstance(steps, bool | int):  # whether it has any (not PostgreSQL)
        return Claim(job=job, last_event_seq=last_event_seq, has_steps=bool(steps))
    rows = [_step_from_json(step) for step in steps or []]
    return Claim(job=job, last_event_seq=last_event_seq, has_steps=bool(rows), steps=rows)


def _step_from_json(row: dict[str, Any]) -> JobStep:
    """A step from its row as PostgreSQL's `json_agg` renders it (keyed by column, its
    JSON column already parsed, ids and times as text), each value made the field's
    Python type as a form would (`to_python`)."""
    fields = JobStep._meta.concrete_fields  # from_db takes them in this order, all of them
    return JobStep.from_db(
        connection.alias,
        [f.attname for f in fields],
        [f.to_python(row[str(f.column)]) for f in fields],
    )


# Stand-ins for the claim's two variables while its statement is compiled, once a process.
_NOW = datetime(1901, 2, 3, 4, 5, 6, tzinfo=UTC)
_PK = uuid.UUID(int=0x5E171E1)


@cache
def _statement(vendor: str, *, relaxed: bool) -> tuple[str, dict[str, Any]]:
    """The claim as SQL with named parameters, and the values of its constant ones;
    `relaxed`: its commit need not wait for the WAL (PostgreSQL, in autocommit).

    Compiled once (per database vendor): building and compiling the queryset on every
    claim cost about half a millisecond, a tenth of a one-step run."""
    queryset = Job.objects.claimable(_NOW).filter(pk=_PK)
    compiler = queryset.query.get_compiler(connection=connection)
    where, values = queryset.query.where.as_sql(compiler, connection)
    parts = where.split("%s")
    if len(parts) != len(values) + 1:
        raise ValueError(f"cannot name the parameters of {where!r}")
    stand_ins = {
        connection.ops.adapt_datetimefield_value(_NOW): "now",
        Job._meta.pk.get_db_prep_value(_PK, connection): "pk",
    }
    constants: dict[str, Any] = {}
    named = parts[0]
    for index, (value, part) in enumerate(zip(values, parts[1:], strict=True)):
        name = stand_ins.get(value)
        if name is None:
            name = f"where{index}"
            constants[name] = value
        named += f"%({name})s" + part
    quote = connection.ops.quote_name
    tables = dict(
        job=quote(Job._meta.db_table),
        event=quote(JobEvent._meta.db_table),
        step=quote(JobStep._meta.db_table),
    )
    postgresql = vendor == "postgresql"
    sql = _CLAIM_SQL.format(
        **tables,
        claimable=named,
        columns=", ".join(quote(str(f.column)) for f in Job._meta.concrete_fields),
        steps=(_STEPS_JSON if postgresql else _HAS_STEPS).format(**tables),
        relaxed=_RELAXED if postgresql and relaxed else "",
    )
    return sql, constants


def drop(job_id: str, owner: str) -> None:
    """Give back a lease its run cannot use any more (the database went away under it):
    queued again, so the next claim goes on at once, and without counting an attempt (the
    handler did not fail; a takeover after a lease runs out would count one)."""
    Job.objects.filter(pk=job_id, lease_owner=owner, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED, lease_owner="", lease_expires_at=None
    )


def renew(job_id: str, owner: str, expires: datetime) -> tuple[bool, bool]:
    """Extend the lease to `expires`. Returns (still ours, cancel requested)."""
    renewed = Job.objects.filter(pk=job_id, lease_owner=owner).update(lease_expires_at=expires)
    if not renewed:
        return False, False
    cancel = Job.objects.filter(pk=job_id).values_list("cancel_requested", flat=True).first()
    return True, bool(cancel)
