"""Every node type, run by the real runtime in this process (`run_job`, as a worker
would) against the real database: what each node records, how failures, retries,
`skip_if` and `continue_on_error` behave, and that a resumed run never repeats a node."""

from pathlib import Path

import pytest

from checkpoints.services import checkpoint_approve, checkpoint_reject, checkpoint_submit_input
from jobs.models import Job, JobStatus
from tests.factories import make_user
from tests.workflows.helpers import make, outputs, pending, settle, start, steps_of
from workflows.events import event_send
from workflows.models import Event

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def approver(name: str = "alice"):
    return make_user(name, approver=True)


def test_transform_branch_and_the_output(acme):
    flow = make(
        acme,
        {
            "input_schema": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
            "variables": {"label": "none"},
            "nodes": [
                {"id": "double", "type": "transform", "config": {"set": {"n2": "input.n * 2"}}},
                {
                    "id": "size",
                    "type": "branch",
                    "config": {
                        "cases": [
                            {
                                "when": "vars.n2 > 10",
                                "nodes": [
                                    {
                                        "id": "big",
                                        "type": "transform",
                                        "config": {"set": {"label": "'big'"}},
                                    }
                                ],
                            }
                        ],
                        "default": [
                            {
                                "id": "small",
                                "type": "transform",
                                "config": {"set": {"label": "'small'"}},
                            }
                        ],
                    },
                },
            ],
            "output": "{{ vars.label }} {{ steps.double.output.n2 }}",
        },
    )
    big, small = start(flow, {"n": 8}), start(flow, {"n": 2})
    assert settle(big.job_id).status == JobStatus.SUCCEEDED
    assert settle(small.job_id).status == JobStatus.SUCCEEDED
    assert outputs(big.job_id) == "big 16" and outputs(small.job_id) == "small 4"
    assert steps_of(big.job_id) == ["double", "big", "size"]  # the chosen case's node only


def test_skip_if_records_a_skipped_node(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "maybe",
                    "type": "transform",
                    "skip_if": "input.skip",
                    "config": {"set": {"x": "1"}},
                },
                {
                    "id": "after",
                    "type": "transform",
                    "config": {"set": {"status": "steps.maybe.status"}},
                },
            ]
        },
    )
    run = start(flow, {"skip": True})
    settle(run.job_id)
    assert outputs(run.job_id) == {"status": "skipped"}


def test_approval_with_edits_is_the_nodes_output(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "review",
                    "type": "approval",
                    "config": {
                        "title": "Send {{ input.count }} mails?",
                        "payload": {"count": "{{ input.count }}"},
                        "required_approvals": 1,
                    },
                },
                {
                    "id": "use",
                    "type": "transform",
                    "config": {"set": {"sent": "steps.review.output.payload.count"}},
                },
            ]
        },
    )
    run = start(flow, {"count": 3})
    assert settle(run.job_id).status == JobStatus.WAITING
    [checkpoint] = pending(run.job_id)
    assert checkpoint.title == "Send 3 mails?" and checkpoint.payload == {"count": 3}
    checkpoint_approve(checkpoint=checkpoint, user=approver(), payload={"count": 2})
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id) == {"sent": 2}


def test_a_rejection_ends_the_run_rejected_unless_the_flow_reads_it(acme):
    strict = make(acme, {"nodes": [{"id": "ok", "type": "approval", "config": {"title": "Go?"}}]})
    lenient = make(
        acme,
        {
            "nodes": [
                {
                    "id": "ok",
                    "type": "approval",
                    "continue_on_error": True,
                    "config": {"title": "Go?"},
                },
                {
                    "id": "why",
                    "type": "transform",
                    "config": {
                        "set": {
                            "approved": "steps.ok.output.approved",
                            "reason": "steps.ok.output.reason",
                        }
                    },
                },
            ],
        },
        slug="lenient",
    )
    for flow in (strict, lenient):
        run = start(flow)
        settle(run.job_id)
        checkpoint_reject(
            checkpoint=pending(run.job_id)[0], user=approver(flow.slug), reason="not today"
        )
        settle(run.job_id)
    assert Job.objects.get(workflow_run__workflow=strict).status == JobStatus.REJECTED
    lenient_job = Job.objects.get(workflow_run__workflow=lenient)
    assert lenient_job.status == JobStatus.SUCCEEDED
    assert lenient_job.result["output"] == {"approved": False, "reason": "not today"}


def test_input_node_gives_the_supplied_data(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "ask",
                    "type": "input",
                    "config": {
                        "title": "Which branch?",
                        "schema": {
                            "type": "object",
                            "required": ["branch"],
                            "properties": {"branch": {"type": "string"}},
                        },
                    },
                }
            ]
        },
    )
    run = start(flow)
    settle(run.job_id)
    checkpoint_submit_input(
        checkpoint=pending(run.job_id)[0], user=approver(), data={"branch": "main"}
    )
    settle(run.job_id)
    assert outputs(run.job_id) == {"branch": "main"}


def test_http_is_retried_per_its_policy_and_a_finished_node_is_not_repeated(acme, remote):
    remote.failures_left = 2
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "first",
                    "type": "http",
                    "config": {"url": remote.url + "/ok?n={{ input.n }}"},
                },
                {
                    "id": "flaky",
                    "type": "http",
                    "retry": {"attempts": 3, "backoff": 0},
                    "config": {"url": remote.url + "/flaky"},
                },
            ]
        },
    )
    run = start(flow, {"n": 7})
    job = settle(run.job_id, timers=True)
    assert job.status == JobStatus.SUCCEEDED, job.error_message
    assert remote.calls == ["/ok?n=7", "/flaky", "/flaky", "/flaky"]  # /ok once
    step = job.steps.get(key="flaky")
    assert step.attempt == 3 and step.output["output"]["json"] == {"path": "/flaky", "ok": True}


def test_retry_if_decides_and_continue_on_error_goes_on(acme, remote):
    remote.failures_left = 5
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "flaky",
                    "type": "http",
                    "continue_on_error": True,
                    "retry": {"attempts": 5, "backoff": 0, "retry_if": "error.status == 429"},
                    "config": {"url": remote.url + "/flaky"},
                },
                {
                    "id": "after",
                    "type": "transform",
                    "config": {
                        "set": {"status": "steps.flaky.status", "code": "steps.flaky.error.status"}
                    },
                },
            ]
        },
    )
    run = start(flow)
    job = settle(run.job_id, timers=True)
    assert job.status == JobStatus.SUCCEEDED
    assert remote.calls == ["/flaky"]  # 503 is not 429: no retry
    assert outputs(run.job_id) == {"status": "failed", "code": 503}


def test_a_failed_node_runs_on_failure_then_fails_the_run(acme, settings):
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = []
    flow = make(
        acme,
        {
            "nodes": [{"id": "call", "type": "http", "config": {"url": "http://example.invalid/"}}],
            "on_failure": [
                {"id": "note", "type": "transform", "config": {"set": {"failed": "error.node"}}}
            ],
        },
    )
    run = start(flow)
    job = settle(run.job_id)
    assert job.status == JobStatus.FAILED and job.error_type == "NodeFailed"
    assert "not in COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS" in job.error_message
    assert job.steps.get(key="on_failure/note").output["output"] == {"failed": "call"}


def test_for_each_inline_with_an_approval_in_each_iteration(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "for_each",
                    "config": {
                        "items": "input.files",
                        "nodes": [
                            {
                                "id": "ok",
                                "type": "approval",
                                "config": {"title": "Write {{ item }}?"},
                            },
                            {
                                "id": "name",
                                "type": "transform",
                                "config": {"set": {"last": "string(index) + ':' + item"}},
                            },
                        ],
                    },
                }
            ]
        },
    )
    run = start(flow, {"files": ["a.py", "b.py"]})
    for title in ("Write a.py?", "Write b.py?"):
        settle(run.job_id)
        [checkpoint] = pending(run.job_id)
        assert checkpoint.title == title
        checkpoint_approve(checkpoint=checkpoint, user=approver(title[6]))
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id) == [{"last": "0:a.py"}, {"last": "1:b.py"}]


def test_llm_node_json_output_checked_against_its_schema(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "ask",
                    "type": "llm",
                    "config": {
                        "provider": "offline",
                        "model": "offline-echo",
                        "prompt": "Say {{ input.what }}",
                    },
                },
                {
                    "id": "strict",
                    "type": "llm",
                    "continue_on_error": True,
                    "config": {
                        "provider": "offline",
                        "model": "offline-echo",
                        "prompt": "x",
                        "output_schema": {"type": "object"},
                    },
                },
            ]
        },
    )
    run = start(flow, {"what": "hello"})
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED
    ask = job.steps.get(key="ask").output
    assert ask["output"].startswith("Offline answer") and ask["usage"]["tokens_out"] > 0
    assert job.tokens_out > 0  # the run's totals add its nodes'
    strict = job.steps.get(key="strict").output
    assert strict["status"] == "failed" and "not JSON" in strict["error"]["message"]


def test_image_node_writes_a_png_into_the_runs_workspace(acme, settings):
    flow = make(
        acme,
        {"nodes": [{"id": "pic", "type": "image", "config": {"prompt": "a {{ input.animal }}"}}]},
    )
    run = start(flow, {"animal": "cat"})
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED
    out = outputs(run.job_id)
    picture = Path(settings.COUNTERSIGN_WORKSPACE_ROOT) / str(run.job_id) / out["path"]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out["bytes"] > 100


def test_sleep_waits_on_a_durable_timer(acme):
    flow = make(acme, {"nodes": [{"id": "nap", "type": "sleep", "config": {"seconds": 3600}}]})
    run = start(flow)
    job = settle(run.job_id)
    assert (job.status, job.wait_reason) == (JobStatus.WAITING, "timer")
    assert settle(run.job_id, timers=True).status == JobStatus.SUCCEEDED


def test_emit_and_wait_for_event_with_a_match_and_a_timeout(acme):
    waiter = make(
        acme,
        {
            "nodes": [
                {
                    "id": "paid",
                    "type": "wait_for_event",
                    "config": {
                        "event": "invoice.paid",
                        "match": "event.data.invoice == input.invoice",
                    },
                },
                {
                    "id": "late",
                    "type": "wait_for_event",
                    "config": {"event": "never", "timeout": 60, "on_timeout": "continue"},
                },
            ],
            "output": "{{ steps.paid.output.data.amount }}",
        },
        slug="waiter",
    )
    sender = make(
        acme,
        {
            "nodes": [
                {
                    "id": "tell",
                    "type": "emit_event",
                    "config": {
                        "event": "invoice.paid",
                        "data": {"invoice": "{{ input.invoice }}", "amount": 40},
                    },
                }
            ]
        },
        slug="sender",
    )
    run = start(waiter, {"invoice": "A-1"})
    assert settle(run.job_id).wait_reason == "event"
    event_send(organization=acme, name="invoice.paid", data={"invoice": "B-2", "amount": 1})
    assert settle(run.job_id).wait_reason == "event"  # not its invoice
    settle(start(sender, {"invoice": "A-1"}).job_id)
    job = settle(run.job_id)
    assert job.wait_reason == "event"  # now at `late`
    assert settle(run.job_id, timers=True).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id) == 40
    assert Event.objects.filter(name="invoice.paid", source="workflow:sender").count() == 1


def test_an_event_sent_before_the_wait_is_registered_is_matched(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {"id": "hold", "type": "approval", "config": {"title": "hold"}},
                {"id": "go", "type": "wait_for_event", "config": {"event": "go"}},
            ]
        },
    )
    run = start(flow)
    settle(run.job_id)  # waiting at the approval: no event wait registered yet
    event_send(organization=acme, name="go", data={"n": 1})
    checkpoint_approve(checkpoint=pending(run.job_id)[0], user=approver())
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id)["data"] == {"n": 1}


def test_one_event_resolves_one_wait_of_a_run(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {"id": "one", "type": "wait_for_event", "config": {"event": "tick"}},
                {"id": "two", "type": "wait_for_event", "config": {"event": "tick"}},
            ]
        },
    )
    run = start(flow)
    event_send(organization=acme, name="tick", data={"n": 1})
    assert settle(run.job_id).wait_reason == "event"  # `two` waits for a second tick
    event_send(organization=acme, name="tick", data={"n": 2})
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id)["data"] == {"n": 2}
