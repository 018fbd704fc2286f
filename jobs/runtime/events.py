"""Progress events: appended to JobEvent, published live on Redis (best effort)."""

import json
from contextlib import nullcontext
from functools import cache
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from core.redis import best_effort
from jobs.models import JobEvent


def channel_name(job_id: str) -> str:
    return f"countersign:job:{job_id}"


def next_seq(job_id: str) -> int:
    current = JobEvent.objects.filter(job_id=job_id).aggregate(m=Max("seq"))["m"]
    return (current or 0) + 1


# One statement numbers and writes an event: after the job's last one, or at the run's
# hint. A number taken meanwhile by another writer inserts nothing (no error, so no
# savepoint is needed inside the caller's transaction) and the next try renumbers.
_APPEND_SQL = """
INSERT INTO {event} ({columns})
SELECT %(job)s, COALESCE(%(seq)s, MAX(seq) + 1, 1), %(kind)s, %(data)s, %(now)s
FROM {event} WHERE job_id = %(job)s
ON CONFLICT (job_id, seq) DO NOTHING
RETURNING id, seq
"""


def append_event(
    job_id: str, kind: str, data: dict[str, Any] | None = None, seq: int | None = None
) -> JobEvent:
    """Append one event in one round trip. `seq` is a hint from a run that numbers its
    own events; on a clash with a writer elsewhere it is recomputed."""
    event = JobEvent(job_id=job_id, kind=kind, data=data or {}, created_at=timezone.now())
    fields = {name: JobEvent._meta.get_field(name) for name in _EVENT_FIELDS}
    params = {
        "job": fields["job"].get_db_prep_save(event.job_id, connection),  # type: ignore[union-attr]
        "kind": kind,
        "data": fields["data"].get_db_prep_save(event.data, connection),  # type: ignore[union-attr]
        "now": fields["created_at"].get_db_prep_save(event.created_at, connection),  # type: ignore[union-attr]
    }
    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute(_statement(), {**params, "seq": seq})
            row = cursor.fetchone()
            if row is not None:
                event.pk, event.seq = row
                publish(event)
                return event
            seq = None
    raise RuntimeError(f"could not number an event for job {job_id}")


@cache
def _statement() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(str(JobEvent._meta.get_field(name).column))  # type: ignore[union-attr]
        for name in _EVENT_FIELDS
    )
    return _APPEND_SQL.format(event=quote(JobEvent._meta.db_table), columns=columns)


def save_events(events: list[JobEvent]) -> None:
    """Write a run's buffered events in one INSERT. If another writer took some
    of their numbers meanwhile, renumber after the current last event and retry."""
    if not events:
        return
    for _ in range(5):
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                _insert(events)
            return
        except IntegrityError:
            first = next_seq(str(events[0].job_id))
            for offset, event in enumerate(events):
                event.seq = first + offset
    raise RuntimeError(f"could not number events for job {events[0].job_id}")


_EVENT_FIELDS = ("job", "seq", "kind", "data", "created_at")


def _insert(events: list[JobEvent]) -> None:
    """One multi-row INSERT with no transaction around it (bulk_create opens
    one, two more round trips on the hot path); it is atomic on its own."""
    fields = [JobEvent._meta.get_field(name) for name in _EVENT_FIELDS]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)  # type: ignore[union-attr]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [
        f.get_db_prep_save(getattr(event, f.attname), connection)  # type: ignore[union-attr]
        for event in events
        for f in fields
    ]
    table = connection.ops.quote_name(JobEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(events))}", params
        )


def event_dict(event: JobEvent) -> dict[str, Any]:
    """An event as followers see it (live on Redis, replayed from the rows)."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


def publish(*events: JobEvent) -> None:
    """Best effort, in one round trip: the rows are the record; a Redis outage pauses
    live events."""
    messages = [(channel_name(str(e.job_id)), json.dumps(event_dict(e))) for e in events]

    def send(redis: Any) -> None:
        if len(messages) == 1:  # a run's event, as it is emitted: no pipeline to build
            redis.publish(*messages[0])
            return
        pipeline = redis.pipeline(transaction=False)
        for channel, message in messages:
            pipeline.publish(channel, message)
        pipeline.execute()

    if messages:
        best_effort(settings.COUNTERSIGN_EVENTS_REDIS_URL, send, what="live events", timeout=0.5)
