"""Cases found by reading the engine against its docs: events emitted per iteration,
model usage summed over containers, failures that must keep their meaning, expressions
that could only fail when run, idempotency keys kept apart, rollbacks re-checked, trigger
loops ended, waits closed with their run."""

from typing import Any

import pytest
from django.utils import timezone

from agents.services import agent_create, agent_delete
from checkpoints.services import checkpoint_approve
from jobs.models import Job, JobStatus
from jobs.runtime import JobError
from jobs.runtime.engine import run_job
from jobs.services import job_cancel, job_create, job_retry
from tests.factories import make_user
from tests.workflows.helpers import make, outputs, pending, settle, start, tree
from workflows.events import MAX_EVENT_DEPTH, event_send
from workflows.models import Event, EventWait, WorkflowRun, WorkflowVersion
from workflows.services import (
    WorkflowInvalid,
    definition_errors,
    workflow_run_start,
    workflow_save,
    workflow_set_version,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def llm(node_id: str, **fields: Any) -> dict[str, Any]:
    config = {"provider": "offline", "model": "offline-echo", "prompt": "say hi"}
    return {"id": node_id, "type": "llm", "config": config, **fields}


def test_each_iteration_emits_its_own_event(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "for_each",
                    "config": {
                        "items": "[1, 2, 3, 4]",
                        "max_parallel": 2,
                        "nodes": [
                            {
                                "id": "tell",
                                "type": "emit_event",
                                "config": {"event": "done", "data": {"n": "{{ item }}"}},
                            }
                        ],
                    },
                }
            ]
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    sent = sorted(e.data["n"] for e in Event.objects.filter(name="done"))
    assert sent == [1, 2, 3, 4]


def test_model_usage_adds_up_over_iterations_and_branches(acme):
    single = start(make(acme, {"nodes": [llm("one")]}, slug="single"))
    per_call = settle(single.job_id).tokens_out
    assert per_call > 0
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "inline",
                    "type": "for_each",
                    "config": {"items": "['a', 'b', 'c']", "nodes": [llm("ask")]},
                },
                {
                    "id": "both",
                    "type": "parallel",
                    "config": {"branches": [{"nodes": [llm("left")]}, {"nodes": [llm("right")]}]},
                },
            ]
        },
    )
    run = start(flow)
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED
    # three iterations and two branches, each one call like `single`'s
    assert job.tokens_out == 5 * per_call
    assert job.tokens_in == 5 * Job.objects.get(pk=single.job_id).tokens_in


def test_retry_is_refused_where_nothing_would_retry(acme):
    agent_create(organization=acme, created_by=None, name="helper")
    errors = definition_errors(
        organization=acme,
        definition={
            "nodes": [
                {
                    "id": "a",
                    "type": "agent",
                    "retry": {"attempts": 3},
                    "config": {"agent": "helper", "task": "x"},
                }
            ]
        },
    )
    assert "nodes.0.retry" in errors and "not retried" in errors["nodes.0.retry"][0]


def test_a_failing_on_failure_keeps_the_runs_own_error(acme, settings):
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = []
    flow = make(
        acme,
        {
            "nodes": [{"id": "call", "type": "http", "config": {"url": "http://example.invalid/"}}],
            "on_failure": [
                {"id": "bad", "type": "transform", "config": {"set": {"x": "1 / 0"}}},
            ],
        },
    )
    job = settle(start(flow).job_id)
    assert job.status == JobStatus.FAILED
    assert "node call failed" in job.error_message and "ALLOWED_HOSTS" in job.error_message


def test_a_failing_skip_if_under_continue_on_error_records_a_failure(acme, remote):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "call",
                    "type": "http",
                    "skip_if": "input.missing.deeper",
                    "continue_on_error": True,
                    "config": {"url": remote.url + "/ok"},
                }
            ]
        },
    )
    job = settle(start(flow).job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert remote.calls == []  # not run
    assert job.steps.get(key="call").output["status"] == "failed"


def test_an_error_marked_not_retryable_is_not_retried(acme, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "ask",
                    "type": "llm",
                    "retry": {"attempts": 3, "backoff": 0},
                    "config": {"provider": "openai", "model": "gpt-4o-mini", "prompt": "hi"},
                }
            ]
        },
    )
    # No OpenAI key here: the provider refuses before sending, not retryable.
    job = settle(start(flow).job_id, timers=True)
    assert job.status == JobStatus.FAILED
    assert job.steps.get(key="ask").attempt == 1


@pytest.mark.parametrize(
    ("definition", "path"),
    [
        ({"concurrency": {"limit": 1, "key": "event.data.x"}}, "concurrency.key"),
        ({"triggers": [{"type": "event", "event": "e", "filter": "input.x"}]}, "triggers.0.filter"),
        ({"triggers": [{"type": "schedule", "cron": "0 0 9 * * *"}]}, "triggers.0.cron"),
        ({"triggers": [{"type": "schedule", "cron": "@daily"}]}, "triggers.0.cron"),
    ],
)
def test_expressions_are_checked_against_what_exists_where_they_run(acme, definition, path):
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]
    errors = definition_errors(organization=acme, definition={"nodes": nodes, **definition})
    assert path in errors, errors


def test_an_idempotency_key_belongs_to_its_workflow(acme):
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]
    one, two = make(acme, {"nodes": nodes}, slug="one"), make(acme, {"nodes": nodes}, slug="two")
    job = job_create(job_type="simple-task", input={}, organization=acme, idempotency_key="k")
    a = workflow_run_start(workflow=one, input={}, idempotency_key="k")
    b = workflow_run_start(workflow=two, input={}, idempotency_key="k")
    again = workflow_run_start(workflow=one, input={}, idempotency_key="k")
    assert len({job.pk, a.job_id, b.job_id}) == 3 and again.job_id == a.job_id
    long = workflow_run_start(workflow=one, input={}, idempotency_key="x" * 200)
    assert len(Job.objects.get(pk=long.job_id).idempotency_key) <= 200


def test_a_rollback_is_checked_again(acme):
    agent = agent_create(organization=acme, created_by=None, name="helper")
    flow = make(
        acme,
        {"nodes": [{"id": "a", "type": "agent", "config": {"agent": "helper", "task": "x"}}]},
    )
    workflow_save(
        workflow=flow,
        definition={"nodes": [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]},
    )
    agent_delete(agent=agent)
    with pytest.raises(WorkflowInvalid, match="no agent 'helper'"):
        workflow_set_version(workflow=flow, number=1)
    flow.refresh_from_db()
    assert flow.current_version is not None and flow.current_version.number == 2


def test_a_workflow_that_triggers_itself_stops(acme):
    flow = make(
        acme,
        {
            "triggers": [{"type": "event", "event": "ping"}],
            "nodes": [{"id": "again", "type": "emit_event", "config": {"event": "ping"}}],
        },
        slug="loop",
    )
    event_send(organization=acme, name="ping")
    for _ in range(MAX_EVENT_DEPTH + 3):
        for run in WorkflowRun.objects.filter(workflow=flow, job__status=JobStatus.QUEUED):
            settle(run.job_id)
    assert WorkflowRun.objects.filter(workflow=flow).count() == MAX_EVENT_DEPTH
    assert not WorkflowRun.objects.filter(workflow=flow, job__status=JobStatus.QUEUED).exists()


def test_a_cancelled_runs_waits_are_closed(acme):
    flow = make(acme, {"nodes": [{"id": "w", "type": "wait_for_event", "config": {"event": "go"}}]})
    run = start(flow)
    settle(run.job_id)
    assert EventWait.objects.filter(job=run.job_id, event__isnull=True).count() == 1
    job_cancel(job=Job.objects.get(pk=run.job_id), user=None)
    settle(run.job_id)
    assert not EventWait.objects.filter(event__isnull=True).exists()


def test_an_event_after_the_timeout_is_not_taken(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "w",
                    "type": "wait_for_event",
                    "config": {"event": "go", "timeout": 60, "on_timeout": "continue"},
                }
            ]
        },
    )
    run = start(flow)
    settle(run.job_id)
    EventWait.objects.filter(job=run.job_id).update(expires_at=timezone.now())
    late, _ = event_send(organization=acme, name="go")
    assert late.received_at > EventWait.objects.get(job=run.job_id).expires_at
    assert not EventWait.objects.filter(event=late).exists()
    Job.objects.filter(pk=run.job_id).update(wake_at=timezone.now())  # its timer is due
    run_job(str(run.job_id))
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED and outputs(run.job_id) is None
    assert all(j.status == JobStatus.SUCCEEDED for j in tree(run.job_id))


def test_a_cancelled_run_retried_goes_on_with_its_branches(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "both",
                    "type": "parallel",
                    "config": {
                        "branches": [
                            {"nodes": [{"id": "ok", "type": "approval", "config": {"title": "a"}}]},
                            {
                                "nodes": [
                                    {"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}
                                ]
                            },
                        ]
                    },
                }
            ]
        },
    )
    run = start(flow)
    settle(run.job_id)
    job_cancel(job=Job.objects.get(pk=run.job_id), user=None)
    assert settle(run.job_id).status == JobStatus.CANCELLED
    job_retry(job=Job.objects.get(pk=run.job_id))
    assert settle(run.job_id).status == JobStatus.WAITING  # at the branch's approval again
    [checkpoint] = pending(run.job_id)
    checkpoint_approve(checkpoint=checkpoint, user=make_user("ann", approver=True))
    assert settle(run.job_id).status == JobStatus.SUCCEEDED


def test_on_failure_nodes_that_wait_do_not_run_the_failed_node_again(acme, remote):
    remote.failures_left = 10
    flow = make(
        acme,
        {
            "nodes": [{"id": "call", "type": "http", "config": {"url": remote.url + "/flaky"}}],
            "on_failure": [
                {"id": "tell", "type": "approval", "config": {"title": "{{ error.node }} failed"}}
            ],
        },
    )
    run = start(flow)
    settle(run.job_id)
    [checkpoint] = pending(run.job_id)
    assert checkpoint.title == "call failed"
    checkpoint_approve(checkpoint=checkpoint, user=make_user("ann", approver=True))
    job = settle(run.job_id)
    assert job.status == JobStatus.FAILED and "node call failed" in job.error_message
    assert remote.calls == ["/flaky"]  # not again when the run resumed after the approval


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"$ref": "http://169.254.169.254/latest/meta-data"}, "only references inside"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "points to nothing"),
        ({"type": "nonesuch"}, "not a valid JSON Schema"),
    ],
)
def test_schemas_may_only_refer_inside_themselves(acme, schema, words):
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]
    errors = definition_errors(
        organization=acme, definition={"input_schema": schema, "nodes": nodes}
    )
    assert any(words in message for message in errors.get("input_schema", [])), errors


def test_a_local_ref_works_and_a_stored_remote_one_is_never_fetched(acme, remote):
    defs = {"$defs": {"n": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/n"}}}
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "input.n"}}}]
    flow = make(acme, {"input_schema": {"type": "object", **defs}, "nodes": nodes})
    with pytest.raises(JobError) as refused:
        workflow_run_start(workflow=flow, input={"n": "two"})
    assert "input.n" in refused.value.fields
    # A schema stored before this check (or written to the table) is applied, not fetched.
    version = flow.current_version
    assert version is not None
    WorkflowVersion.objects.filter(pk=version.pk).update(
        definition={**version.definition, "input_schema": {"$ref": remote.url + "/x"}}
    )
    with pytest.raises(JobError, match="invalid input"):
        workflow_run_start(workflow=flow, input={})
    assert remote.calls == []


def test_a_run_an_event_started_is_its_senders(acme):
    ann = make_user("ann", approver=True)
    make(
        acme,
        {
            "triggers": [{"type": "event", "event": "deploy"}],
            "nodes": [{"id": "ok", "type": "approval", "config": {"title": "go?"}}],
        },
    )
    event_send(organization=acme, name="deploy", created_by=ann)
    run = WorkflowRun.objects.get()
    assert run.job.created_by == ann  # so ann may not approve it (four eyes)
    settle(run.job_id)
    with pytest.raises(Exception, match="(?i)four-eyes|created"):
        checkpoint_approve(checkpoint=pending(run.job_id)[0], user=ann)


def test_a_cron_that_never_comes_is_refused(acme):
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]
    triggers = [{"type": "schedule", "cron": "0 0 31 2 *"}]
    errors = definition_errors(organization=acme, definition={"nodes": nodes, "triggers": triggers})
    assert errors == {"triggers.0.cron": ["names no time that ever comes"]}


def test_branches_each_set_a_variable_and_the_join_keeps_both(acme):
    def setting(name: str, value: str) -> dict[str, Any]:
        return {"nodes": [{"id": name, "type": "transform", "config": {"set": {name: value}}}]}

    flow = make(
        acme,
        {
            "variables": {"x": 0, "y": 0},
            "nodes": [
                {
                    "id": "both",
                    "type": "parallel",
                    "config": {"branches": [setting("x", "1"), setting("y", "2")]},
                }
            ],
            "output": "{{ vars }}",
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id) == {"x": 1, "y": 2}


def test_a_trigger_loop_through_a_sub_workflow_stops_too(acme):
    make(
        acme,
        {"nodes": [{"id": "tell", "type": "emit_event", "config": {"event": "tick"}}]},
        slug="child",
    )
    parent = make(
        acme,
        {
            "triggers": [{"type": "event", "event": "tick"}],
            "nodes": [{"id": "sub", "type": "workflow", "config": {"workflow": "child"}}],
        },
        slug="parent",
    )
    event_send(organization=acme, name="tick")
    for _ in range(3 * MAX_EVENT_DEPTH):
        queued = Job.objects.filter(status=JobStatus.QUEUED, parent__isnull=True)
        if not queued.exists():
            break
        for job in queued:
            settle(job.pk)
    assert WorkflowRun.objects.filter(workflow=parent).count() == MAX_EVENT_DEPTH


def test_a_response_with_a_nul_character_is_stored(acme, remote):
    nodes = [
        {"id": "text", "type": "http", "config": {"url": remote.url + "/nul"}},
        {"id": "json", "type": "http", "config": {"url": remote.url + "/nul.json"}},
    ]
    job = settle(start(make(acme, {"nodes": nodes})).job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert job.steps.get(key="text").output["output"]["text"] == "a\ufffdb"
    assert job.steps.get(key="json").output["output"]["json"] == {
        "s": "a\ufffdb",
        "t": "x\ufffdy",  # a lone surrogate
        "e": "\U0001f600",  # a pair is kept
    }


def test_a_run_retried_after_a_cancel_during_on_failure_reruns_the_failed_node(acme, remote):
    remote.failures_left = 2  # the node's first call, and on_failure's first
    flow = make(
        acme,
        {
            "nodes": [{"id": "x", "type": "http", "config": {"url": remote.url + "/flaky-x"}}],
            "on_failure": [
                {
                    "id": "h",
                    "type": "http",
                    "retry": {"attempts": 3, "backoff": 0},
                    "config": {"url": remote.url + "/flaky-h"},
                }
            ],
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.RETRYING  # h waits for its next attempt
    job_cancel(job=Job.objects.get(pk=run.job_id), user=None)
    job_retry(job=Job.objects.get(pk=run.job_id))
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert remote.calls == ["/flaky-x", "/flaky-h", "/flaky-x"]


def test_a_ref_loop_is_refused_and_data_deeper_than_a_recursive_schema_is_a_400(acme):
    loop = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    nodes = [{"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}]
    errors = definition_errors(organization=acme, definition={"input_schema": loop, "nodes": nodes})
    assert errors == {"input_schema": ["its $ref chain loops back on itself"]}
    tree_schema = {"type": "object", "properties": {"v": {"$ref": "#"}}}
    flow = make(acme, {"input_schema": tree_schema, "nodes": nodes})
    deep: dict[str, Any] = {}
    for _ in range(100):
        deep = {"v": deep}
    assert workflow_run_start(workflow=flow, input=deep).job_id  # 100 levels: fine
    for _ in range(400):
        deep = {"v": deep}
    with pytest.raises(JobError) as refused:
        workflow_run_start(workflow=flow, input=deep)
    assert refused.value.fields == {"input": ["nested deeper than 128 levels"]}
    with pytest.raises(JobError, match="invalid input"):
        workflow_run_start(workflow=flow, input={"s": "a\x00b"})


def test_containers_nest_16_deep(acme):
    inner: dict[str, Any] = {"id": "t", "type": "transform", "config": {"set": {"x": "1"}}}
    for level in range(15):
        case = {"when": "true", "nodes": [inner]}
        inner = {"id": f"b{level}", "type": "branch", "config": {"cases": [case]}}
    assert definition_errors(organization=acme, definition={"nodes": [inner]}) == {}


def test_a_nul_in_a_definition_is_refused_by_every_way_in(acme):
    """The API's parser refuses it first (tests/api/test_crafted_input.py); the command
    line and the admin reach the definition check."""
    nodes = [{"id": "a", "type": "agent", "config": {"agent": "x\x00", "task": "t"}}]
    errors = definition_errors(organization=acme, definition={"nodes": nodes})
    assert errors == {"definition": ["a NUL character (\\u0000) in a string"]}
