"""Progress events: appended to JobEvent, published live on Redis (best effort)."""

import json
import logging
import threading
import time
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from core.redis import redis_client
from jobs.models import JobEvent

logger = logging.getLogger(__name__)

_redis_lock = threading.Lock()
_redis_client: Any = None
_redis_down_until = 0.0
REDIS_RETRY_SECONDS = 30.0


def channel_name(job_id: str) -> str:
    return f"countersign:job:{job_id}"


def next_seq(job_id: str) -> int:
    current = JobEvent.objects.filter(job_id=job_id).aggregate(m=Max("seq"))["m"]
    return (current or 0) + 1


def append_event(job_id: str, kind: str, data: dict[str, Any] | None = None,
                 seq: int | None = None) -> JobEvent:
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
    params = [f.get_db_prep_save(getattr(event, f.attname), connection)  # type: ignore[union-attr]
              for event in events for f in fields]
    table = connection.ops.quote_name(JobEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join([row] * len(events))}",
                       params)


def publish(event: JobEvent) -> None:
    client = _redis()
    if client is None:
        return
    message = json.dumps(
        {"seq": event.seq, "kind": event.kind, "data": event.data,
         "created_at": event.created_at.isoformat()}
    )
    try:
        client.publish(channel_name(str(event.job_id)), message)
    except Exception as exc:  # live streaming is best effort; the row is the record
        logger.debug("event publish failed: %s", exc)


def _redis() -> Any:
    """A shared client, or None while Redis is unreachable (retried every 30 s)."""
    global _redis_client, _redis_down_until
    url = settings.COUNTERSIGN_EVENTS_REDIS_URL
    if not url or time.monotonic() < _redis_down_until:
        return None
    with _redis_lock:
        if _redis_client is None:
            client = redis_client(url, timeout=0.5)
            try:
                client.ping()
            except Exception:
                logger.warning("live events paused for %.0fs: Redis at "
                               "COUNTERSIGN_EVENTS_REDIS_URL is not reachable",
                               REDIS_RETRY_SECONDS)
                _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                return None
            _redis_client = client
    return _redis_client
