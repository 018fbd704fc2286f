"""Progress events: appended to JobEvent, published live on Redis (best effort)."""

import json
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from core.redis import best_effort
from jobs.models import JobEvent


def channel_name(job_id: str) -> str:
    return f"countersign:job:{job_id}"


def next_seq(job_id: str) -> int:
    current = JobEvent.objects.filter(job_id=job_id).aggregate(m=Max("seq"))["m"]
    return (current or 0) + 1


def append_event(
    job_id: str, kind: str, data: dict[str, Any] | None = None, seq: int | None = None
) -> JobEvent:
    """Append one event. `seq` is a hint from a run that numbers its own events;
    on a clash with a writer elsewhere it is recomputed."""
    payload = data or {}
    for _ in range(5):
        candidate = seq if seq is not None else next_seq(job_id)
        try:
            # Outside a transaction one INSERT is atomic on its own; inside one, a
            # savepoint keeps a numbering clash from breaking the caller's transaction.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                event = JobEvent.objects.create(
                    job_id=job_id, seq=candidate, kind=kind, data=payload
                )
        except IntegrityError:
            seq = None
            continue
        publish(event)
        return event
    raise RuntimeError(f"could not number an event for job {job_id}")


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


def publish(event: JobEvent) -> None:
    """Best effort: the row is the record; a Redis outage pauses live events."""
    message = json.dumps(event_dict(event))
    best_effort(
        settings.COUNTERSIGN_EVENTS_REDIS_URL,
        lambda redis: redis.publish(channel_name(str(event.job_id)), message),
        what="live events",
        timeout=0.5,
    )
