"""Events: sending them, the waits they resolve, and the workflows they start.

**Which events a `wait_for_event` node matches.** Any event of the run's organization
with the node's name, received after the run was created, that no earlier wait of the
same run matched, and whose data satisfies the node's `match` (oldest first). So an event
sent after the run started but before its wait was registered (the race of inngest#1433)
is still matched: the wait looks back to the run's start, not to its own registration.

**Why no event is missed.** A wait registers itself (an `EventWait` row) and looks for a
matching event in the transaction that suspends its run; sending an event inserts it
and looks for matching waits in one transaction. Both take the same lock first (a
PostgreSQL advisory lock on organization and event name), so one of them runs after the
other has committed: either the wait sees the event, or the sender sees the wait.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from core.errors import ApplicationError
from core.schemas import MAX_JSON_DEPTH, json_problem
from jobs.models import Job, JobStep
from jobs.runtime import Pending, Resolved, wake_job
from workflows.expressions import ExpressionError, condition
from workflows.models import Event, EventWait, Trigger, TriggerRule
from workflows.services import workflow_run_start

logger = logging.getLogger(__name__)

REASON = "event"
# How deep a chain of events emitted by runs started by events may go and still start
# workflows: a workflow that emits the event that triggers it stops here, not never.
MAX_EVENT_DEPTH = 8


class EventRejected(ApplicationError):
    pass


def _lock(organization_id: int, name: str) -> None:
    """Serialise registrations and deliveries of one event name in one organization."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))",
                [f"event:{organization_id}:{name}"],
            )


def _matches(wait: EventWait, event: Event) -> bool:
    if not wait.match:
        return True
    try:
        return condition(wait.match, {**wait.context, "event": event.payload()})
    except ExpressionError as exc:  # a match that cannot be evaluated on this event
        logger.info("event %s does not match wait %s: %s", event.pk, wait.pk, exc)
        return False


@transaction.atomic
def event_send(
    *,
    organization: Organization,
    name: str,
    data: Any = None,
    idempotency_key: str = "",
    source: str = "",
    depth: int = 0,
    created_by: User | None = None,
) -> tuple[Event, bool]:
    """Record an event and deliver it: wake the runs waiting for it whose match holds,
    start the workflows whose trigger holds. With an idempotency key, sending again
    returns the first event and delivers nothing. Returns (event, created)."""
    data = {} if data is None else data
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise EventRejected(
            "an event needs a name of 1 to 200 characters", {"name": ["1 to 200 characters."]}
        )
    sent = {"name": name, "data": data, "source": source, "key": idempotency_key}
    if problem := json_problem(sent, MAX_JSON_DEPTH):
        raise EventRejected(f"invalid event: {problem}", {"data": [problem]})
    _lock(organization.pk, name)
    if idempotency_key:
        earlier = Event.objects.filter(
            organization=organization, idempotency_key=idempotency_key
        ).first()
        if earlier is not None:
            return earlier, False
    try:
        with transaction.atomic():
            event = Event.objects.create(
                organization=organization,
                name=name,
                data=data,
                idempotency_key=idempotency_key,
                source=source,
                depth=depth,
                created_by=created_by,
            )
    except IntegrityError:  # the same key, sent at the same moment: that one is the event
        return Event.objects.get(organization=organization, idempotency_key=idempotency_key), False
    _deliver(event)
    return event, True


def _deliver(event: Event) -> None:
    open_waits = (
        EventWait.objects.filter(
            organization_id=event.organization_id, name=event.name, event__isnull=True
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=event.received_at))
        .order_by("created_at", "pk")
    )
    matched_runs: set[Any] = set()
    for wait in open_waits:
        if wait.run_id in matched_runs or not _matches(wait, event):
            continue  # one event resolves one wait per run
        if EventWait.objects.filter(pk=wait.pk, event__isnull=True).update(event=event):
            matched_runs.add(wait.run_id)
            wake_job(job_id=str(wait.job_id), reason=f"event {event.name}")
    _start_triggered(event)


def _start_triggered(event: Event) -> None:
    if event.depth >= MAX_EVENT_DEPTH:
        logger.warning(
            "event %s (%s) is %d emits deep: it starts no workflow (a trigger loop?)",
            event.pk,
            event.name,
            event.depth,
        )
        return
    rules = TriggerRule.objects.filter(
        kind=Trigger.EVENT,
        event_name=event.name,
        workflow__organization_id=event.organization_id,
        workflow__active=True,
    ).select_related("workflow")
    data = dict(event.data) if isinstance(event.data, dict) else {"data": event.data}
    for rule in rules:
        try:
            if rule.filter and not condition(rule.filter, {"event": event.payload()}):
                continue
            with transaction.atomic():  # one workflow that cannot start loses no event
                workflow_run_start(
                    workflow=rule.workflow,
                    input=dict(data),
                    trigger=Trigger.EVENT,
                    event=event,
                    created_by=event.created_by,
                    idempotency_key=f"event:{event.pk}:{rule.workflow_id}",
                )
        except ApplicationError as exc:  # a filter or an input that does not fit: said
            logger.warning("event %s did not start %s: %s", event.pk, rule.workflow.slug, exc)
        except Exception:  # the event is recorded and delivered all the same
            logger.exception("event %s failed to start %s", event.pk, rule.workflow.slug)


@dataclass
class EventWaiter:
    """The wait of a `wait_for_event` node (registered as the runtime waiter "event")."""

    name: str
    run_id: str  # the run (for a branch: its root), whose start the wait looks back to
    match: str = ""
    context: dict[str, Any] | None = None
    timeout: float | None = None
    reason: str = REASON

    def poll(
        self,
        *,
        job: Job,
        key: str,
        step: JobStep | None,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> Pending | Resolved:
        _lock(job.organization_id, self.name)
        now = timezone.now()
        wait = EventWait.objects.select_related("event").filter(job=job, key=key).first()
        if wait is None:  # reached now: registered, looking back to the run's start
            wait = EventWait.objects.create(
                job=job,
                key=key,
                run_id=self.run_id,
                organization_id=job.organization_id,
                name=self.name,
                match=self.match,
                context=self.context or {},
                since=Job.objects.values_list("created_at", flat=True).get(pk=self.run_id),
                expires_at=now + timedelta(seconds=self.timeout) if self.timeout else None,
            )
        if wait.event_id is None:
            self._find(wait)
        if wait.event is not None:
            return Resolved({"timed_out": False, "event": wait.event.payload()})
        if wait.expires_at is not None and wait.expires_at <= now:
            return Resolved({"timed_out": True, "event": None})
        return Pending(state={"wait": wait.pk}, wake_at=wait.expires_at)

    def _find(self, wait: EventWait) -> None:
        """The oldest matching event no other wait of this run has taken, if any."""
        taken = EventWait.objects.filter(run_id=wait.run_id, event__isnull=False).values("event")
        candidates = (
            Event.objects.filter(
                organization_id=wait.organization_id, name=wait.name, received_at__gte=wait.since
            )
            .exclude(pk__in=taken)
            .order_by("received_at", "pk")
        )
        if wait.expires_at is not None:  # one received after the timeout is too late
            candidates = candidates.filter(received_at__lt=wait.expires_at)
        for event in candidates.iterator():
            if _matches(wait, event):
                EventWait.objects.filter(pk=wait.pk).update(event=event)
                wait.event = event
                return

    def load(self, data: Any) -> dict[str, Any]:
        return dict(data)


def waits_closed(sender: Any, job_id: str, job_type: str, **kwargs: Any) -> None:
    """`job_finished` receiver: a run or branch that ended (failed, cancelled, …) waits
    no more, so later events need not test its waits. Resolved waits stay: they say
    which events the run took."""
    if job_type not in ("workflow", "workflow-branch"):
        return
    EventWait.objects.filter(job_id=job_id, event__isnull=True).delete()
