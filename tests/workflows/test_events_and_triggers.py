"""Events sent while waits register (hammered from threads on the real database),
schedules (no double fire, the missed-fire policy, time zones), message triggers and
their replies, and importing a workflow file with the agents it needs."""

import functools
import json
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import Role
from agents.models import Agent
from jobs.models import Job, JobStatus
from jobs.runtime import queue
from jobs.runtime.engine import run_job
from tests.factories import client_for
from tests.utils import wait_for
from tests.workflows.helpers import make, outputs, settle, start
from workflows import events
from workflows.events import event_send
from workflows.models import EventWait, Trigger, TriggerRule, WorkflowRun
from workflows.services import next_fire, schedules_fire, workflow_message

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "coordinate-agents.json"

pytestmark = pytest.mark.usefixtures("local_runtime")


def in_threads(*calls: Any) -> list[Any]:
    """Run the calls at the same moment, each in a thread with its own connection."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = calls[index]()
        except BaseException as exc:  # re-raised in the test's thread
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@pytest.fixture
def unseen_by_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No run message is sent: these tests run the jobs themselves (a session worker
    may be running, and would take them)."""
    monkeypatch.setattr(queue, "send_run_message", lambda *args, **kwargs: None)


def finished(job_id: Any) -> Any:
    """The run's output once it has succeeded: run here while it is queued, or wait for
    the session's worker, which may have taken it (these tests commit)."""

    def done() -> bool:
        job = Job.objects.get(pk=job_id)
        if job.status == JobStatus.QUEUED:
            run_job(str(job_id))  # a no-op if the worker claimed it first
            job.refresh_from_db()
        return job.status == JobStatus.SUCCEEDED

    wait_for(done, timeout=15, message=f"run {job_id} to succeed")
    return outputs(job_id)


# --- the missed-event race ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unseen_by_workers")
def test_no_event_is_missed_when_it_races_the_waits_registration(acme, monkeypatch):
    """The race of inngest#1433: a run registering its wait while the event it waits for
    is being sent. Each try starts the run's first slice (which registers the wait and
    suspends) and sends the event at the same moment, with a random head start of either
    side; whichever commits first, the run must go on with that event. The sender's
    commit is delayed by up to 3 ms after it looked for waits (a busy database), which
    widens the window: without the lock, about one try in ten misses its event."""
    deliver = events._deliver

    def slow_commit(event: Any) -> None:
        deliver(event)
        threading.Event().wait(rng.uniform(0, 0.003))

    monkeypatch.setattr(events, "_deliver", slow_commit)
    rng = random.Random(11)
    flow = make(
        acme,
        {
            "input_schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "nodes": [
                {
                    "id": "go",
                    "type": "wait_for_event",
                    "config": {"event": "go", "match": "event.data.n == input.n"},
                }
            ],
            "output": "{{ steps.go.output.data.n }}",
        },
    )
    tries, missed = 150, []  # without the lock, 0.9 ** 150: about one chance in 7 million to pass
    for n in range(tries):
        run = start(flow, {"n": n})
        # The run's slice takes some 10-20 ms to reach its wait: the event is sent at a
        # random moment from shortly before it starts to after it has suspended.
        lag = rng.uniform(-0.005, 0.025)

        def registering(run: WorkflowRun = run, lag: float = lag) -> None:
            threading.Event().wait(max(-lag, 0))
            run_job(str(run.job_id))

        def sending(n: int = n, lag: float = lag) -> None:
            threading.Event().wait(max(lag, 0))
            event_send(organization=acme, name="go", data={"n": n})

        in_threads(registering, sending)
        # Both have committed: the wait holds the event now, or never will.
        if EventWait.objects.get(job=run.job_id).event_id is None:
            missed.append(n)
        else:
            assert finished(run.job_id) == n
    assert missed == [], f"{len(missed)} of {tries} runs missed their event: {missed[:5]}"
    assert EventWait.objects.filter(event__isnull=True).count() == 0


# --- schedules ---------------------------------------------------------------------------


def scheduled(acme: Any, cron: str = "*/5 * * * *", zone: str = "Europe/Paris") -> Any:
    return make(
        acme,
        {
            "nodes": [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}],
            "triggers": [{"type": "schedule", "cron": cron, "timezone": zone}],
        },
        slug="nightly",
    )


@pytest.mark.django_db
def test_a_schedule_fires_its_slot_once(acme):
    flow = scheduled(acme)
    rule = TriggerRule.objects.get(workflow=flow, kind=Trigger.SCHEDULE)
    slot = rule.next_fire_at
    assert slot is not None and slot > timezone.now() and slot.minute % 5 == 0
    assert schedules_fire(now=slot - timedelta(seconds=1)) == 0
    assert schedules_fire(now=slot) == 1
    assert schedules_fire(now=slot) == 0  # beat again, or a restarted beat: nothing new
    run = WorkflowRun.objects.get(workflow=flow)
    assert run.trigger == Trigger.SCHEDULE
    rule.refresh_from_db()
    assert rule.last_fired_at == slot and rule.next_fire_at == slot + timedelta(minutes=5)
    assert settle(run.job_id).status == JobStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_start_each_slot_once(acme):
    """Two beats (or a beat restarted while its old process still runs) sweeping at the
    same moment: the rule's lock and the slot's idempotency key give one run per slot."""
    flow = scheduled(acme, cron="* * * * *", zone="UTC")
    rule = TriggerRule.objects.get(workflow=flow)
    # Slots far ahead: a session worker's real beat (sweeping with the real time) must
    # not find them due and fire them first.
    base = datetime(2100, 1, 1, 9, 0, tzinfo=UTC)
    for minute in range(20):
        slot = base + timedelta(minutes=minute)
        TriggerRule.objects.filter(pk=rule.pk).update(next_fire_at=slot)
        beat = functools.partial(schedules_fire, now=slot)
        fired = in_threads(beat, beat)
        assert sorted(fired) == [0, 1], (minute, fired)
    assert WorkflowRun.objects.filter(workflow=flow).count() == 20


@pytest.mark.django_db
def test_missed_slots_fire_once_then_the_schedule_goes_on_from_now(acme):
    flow = scheduled(acme, cron="*/5 * * * *", zone="UTC")
    now = timezone.now()
    TriggerRule.objects.filter(workflow=flow).update(next_fire_at=now - timedelta(hours=3))
    assert schedules_fire(now=now) == 1  # 36 slots were missed: one run, not 36
    rule = TriggerRule.objects.get(workflow=flow)
    assert now < rule.next_fire_at <= now + timedelta(minutes=5)
    assert schedules_fire(now=now) == 0
    assert WorkflowRun.objects.filter(workflow=flow).count() == 1


def test_schedules_follow_their_time_zone_across_daylight_saving():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer (2026-03-29 switch).
    before = next_fire("0 9 * * *", "Europe/Paris", datetime(2026, 3, 27, 12, tzinfo=UTC))
    after = next_fire("0 9 * * *", "Europe/Paris", datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert before.astimezone(UTC) == datetime(2026, 3, 28, 8, tzinfo=UTC)
    assert after.astimezone(UTC) == datetime(2026, 3, 30, 7, tzinfo=UTC)


@pytest.mark.django_db
def test_an_inactive_workflow_does_not_fire(acme):
    flow = scheduled(acme)
    flow.active = False
    flow.save(update_fields=["active"])
    TriggerRule.objects.filter(workflow=flow).update(next_fire_at=timezone.now())
    assert schedules_fire() == 0


# --- messages ----------------------------------------------------------------------------


def echo(acme: Any) -> Any:
    return make(
        acme,
        {
            "triggers": [{"type": "message"}],
            "nodes": [
                {
                    "id": "reply",
                    "type": "transform",
                    "config": {
                        "set": {
                            "text": "'you said ' + input.message + ' after '"
                            " + string(size(input.history)) + ' messages'"
                        }
                    },
                }
            ],
            "output": "{{ vars.text }}",
        },
        slug="echo",
    )


@pytest.mark.django_db
def test_a_message_starts_a_run_with_the_history_and_its_output_is_the_reply(acme):
    flow = echo(acme)
    first = workflow_message(workflow=flow, session_id="s1", text="hello")
    assert settle(first.job_id).status == JobStatus.SUCCEEDED
    second = workflow_message(workflow=flow, session_id="s1", text="again")
    settle(second.job_id)
    assert outputs(second.job_id) == "you said again after 2 messages"
    assert Job.objects.get(pk=second.job_id).input["input"]["history"] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "you said hello after 0 messages"},
    ]
    other = workflow_message(workflow=flow, session_id="s2", text="hi")
    settle(other.job_id)
    assert outputs(other.job_id) == "you said hi after 0 messages"  # sessions are apart


@pytest.mark.django_db
def test_the_message_endpoint_needs_a_message_trigger_and_an_operator(acme):
    flow = echo(acme)
    plain = make(acme, {"nodes": [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]})
    operator = client_for("olga", acme, Role.OPERATOR)
    viewer = client_for("vera", acme, Role.VIEWER)
    url = f"/api/v1/workflows/{flow.pk}/message/"
    body = {"session_id": "s9", "message": "hello"}
    assert viewer.post(url, body, format="json").status_code == 403
    answer = operator.post(url, body, format="json")
    assert answer.status_code == 202, answer.content
    assert WorkflowRun.objects.filter(workflow=flow, session_id="s9").count() == 1
    refused = operator.post(f"/api/v1/workflows/{plain.pk}/message/", body, format="json")
    assert refused.status_code == 409 and "message trigger" in refused.json()["error"]["message"]
    empty = operator.post(url, {"session_id": "s9", "message": ""}, format="json")
    assert empty.status_code == 400


# --- importing a workflow file -----------------------------------------------------------


@pytest.mark.django_db
def test_the_example_imports_with_its_agents_once(acme, capsys):
    call_command("workflows", "--org", "acme", "import", str(EXAMPLE), "--json")
    first = json.loads(capsys.readouterr().out)
    assert first == {
        "slug": "coordinate-agents",
        "version": 1,
        "created": True,
        "agents_created": ["planner", "researcher", "writer", "reviewer"],
    }
    call_command("workflows", "--org", "acme", "import", str(EXAMPLE), "--json")
    again = json.loads(capsys.readouterr().out)
    assert again == {**first, "created": False, "agents_created": []}  # same definition
    assert Agent.objects.filter(organization=acme).count() == 4


@pytest.mark.django_db
def test_an_import_with_a_bad_agent_saves_nothing(acme, tmp_path):
    data = json.loads(EXAMPLE.read_text())
    data["agents"][3]["provider"] = "nonesuch"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match=r"agents\.3\.provider"):
        call_command("workflows", "--org", "acme", "import", str(path))
    assert not Agent.objects.filter(organization=acme).exists()  # the first three too
    assert not WorkflowRun.objects.exists() and not acme.workflows.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("unseen_by_workers")
def test_the_worst_interleaving_still_delivers(acme, monkeypatch):
    """The interleaving that loses an event without the lock, forced: the run has
    written its wait and found no event, but not committed, when the event is sent.
    With the lock the sender waits for the run's transaction, then finds its wait."""
    flow = make(
        acme, {"nodes": [{"id": "go", "type": "wait_for_event", "config": {"event": "go"}}]}
    )
    run = start(flow)
    looked, sent = threading.Event(), threading.Event()
    find = events.EventWaiter._find

    def find_then_dawdle(self: Any, wait: Any) -> None:
        find(self, wait)
        looked.set()
        sent.wait(timeout=1.0)  # with the lock the sender cannot finish first: 1 s lost

    monkeypatch.setattr(events.EventWaiter, "_find", find_then_dawdle)

    def sending() -> None:
        looked.wait(timeout=10)
        event_send(organization=acme, name="go", data={"n": 1})
        sent.set()

    in_threads(lambda: run_job(str(run.job_id)), sending)
    assert finished(run.job_id)["data"] == {"n": 1}
