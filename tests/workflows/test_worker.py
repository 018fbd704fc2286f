"""Workflows on a real worker (one pool slot, embedded beat), the real broker and
PostgreSQL: the shipped multi-agent example end to end, an agent calling a workflow as a
function, and a schedule fired by beat whose run an event sent through the API wakes."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Role
from agents.services import agent_create, agent_execute
from checkpoints.models import Checkpoint
from checkpoints.services import checkpoint_approve
from jobs.models import Job, JobStatus
from tests.factories import client_for
from tests.llm_server import Reply, ToolCallReply
from tests.utils import wait_for, wait_status
from tests.workflows.helpers import make
from workflows.models import Trigger, TriggerRule, WorkflowRun

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "coordinate-agents.json"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def nodes_by_id(view: list[dict]) -> dict[str, dict]:
    """The per-node view flattened (branches and their nodes included), by node id."""
    found: dict[str, dict] = {}
    for node in view:
        found[node["id"]] = node
        for branch in node.get("branches", []):
            found.update(nodes_by_id(branch["nodes"]))
    return found


def test_the_coordinate_agents_example_end_to_end(acme):
    call_command("workflows", "--org", "acme", "import", str(EXAMPLE))
    out = io.StringIO()
    call_command(
        "workflows",
        "--org",
        "acme",
        "run",
        "coordinate-agents",
        "--input",
        json.dumps({"goal": "a one-page note on durable execution"}),
        "--wait",
        "--timeout",
        "60",
        "--json",
        stdout=out,
    )
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    # --wait stopped at the person, not at the agents, branches or the event wait
    assert summary["status"] == "waiting", summary
    assert [w["node"] for w in summary["waiting"]] == ["approve"]

    approver = client_for("ann", acme, Role.APPROVER)
    detail = approver.get(f"/api/v1/workflow-runs/{summary['run']}/").json()
    nodes = nodes_by_id(detail["nodes"])
    for done in ("plan", "work", "research", "research_done", "outline", "notes", "draft"):
        assert nodes[done]["status"] == "succeeded", (done, nodes[done])
    research = nodes["research"]["output"]["answer"]
    # the writer's branch waited for the researcher's event and drafted with its notes
    assert nodes["notes"]["output"]["data"]["notes"] == research
    assert research in nodes["draft"]["input"]["task"]
    assert nodes["review"]["status"] == "succeeded"
    assert nodes["approve"]["status"] == "waiting"

    checkpoint = Checkpoint.objects.get(pk=summary["waiting"][0]["checkpoint_id"])
    assert checkpoint.payload["draft"] == nodes["draft"]["output"]["answer"]
    edited = {**checkpoint.payload, "draft": "The edited draft."}
    answer = approver.post(
        f"/api/v1/checkpoints/{checkpoint.pk}/approve/", {"payload": edited}, format="json"
    )
    assert answer.status_code == 200, answer.content
    wait_status(summary["run"], JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=summary["run"]).result["output"] == "The edited draft."
    run = approver.get(f"/api/v1/workflow-runs/{summary['run']}/").json()
    assert run["status"] == "succeeded"


def test_an_agent_calls_a_workflow_as_a_function_after_approval(acme, reviewer, llm_server):
    make(
        acme,
        {
            "input_schema": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
            "tool": {"description": "Double a number.", "requires_approval": True},
            "nodes": [
                {"id": "twice", "type": "transform", "config": {"set": {"d": "input.n * 2"}}}
            ],
            "output": "{{ vars.d }}",
        },
        slug="double",
    )
    agent = agent_create(
        organization=acme,
        created_by=None,
        name="calc",
        provider="openai",
        model="gpt-4o-mini",
        tools=["workflow:double"],
    )
    llm_server.script(
        Reply(tool_calls=[ToolCallReply("workflow_double", {"n": 21})]),
        Reply(text="It is 42."),
    )
    job = agent_execute(agent=agent, user=None, task="Double 21")
    wait_status(job.pk, JobStatus.WAITING)
    offered = llm_server.requests[0].body["tools"]
    [double] = [t["function"] for t in offered if t["function"]["name"] == "workflow_double"]
    assert double["description"] == "Double a number."
    assert double["parameters"]["properties"] == {"n": {"type": "integer"}}

    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.payload == {"tool": "workflow_double", "arguments": {"n": 21}}
    checkpoint_approve(checkpoint=checkpoint, user=reviewer)
    wait_status(job.pk, JobStatus.SUCCEEDED)
    run = WorkflowRun.objects.get(job__parent=job)
    assert run.trigger == Trigger.AGENT and run.job.status == JobStatus.SUCCEEDED
    [tool_message] = [m for m in llm_server.requests[1].body["messages"] if m["role"] == "tool"]
    result = json.loads(tool_message["content"])["result"]
    assert result == {"run": str(run.job_id), "output": 42}
    job.refresh_from_db()
    assert job.result["answer"] == "It is 42."


def test_beat_fires_a_schedule_and_an_event_from_the_api_wakes_the_run(acme):
    flow = make(
        acme,
        {
            "triggers": [{"type": "schedule", "cron": "0 3 * * *", "timezone": "UTC"}],
            "nodes": [
                {
                    "id": "paid",
                    "type": "wait_for_event",
                    "config": {"event": "invoice.paid", "match": "event.data.amount > 10"},
                }
            ],
            "output": "{{ steps.paid.output.data.amount }}",
        },
        slug="nightly",
    )
    TriggerRule.objects.filter(workflow=flow).update(next_fire_at=timezone.now())
    run = wait_for(
        lambda: WorkflowRun.objects.filter(workflow=flow).first(), message="beat to fire"
    )
    assert run.trigger == Trigger.SCHEDULE
    wait_for(
        lambda: Job.objects.filter(pk=run.job_id, wait_reason="event").exists(),
        message="the run to wait for its event",
    )
    operator = client_for("olga", acme, Role.OPERATOR)
    small = operator.post(
        "/api/v1/events/", {"name": "invoice.paid", "data": {"amount": 5}}, format="json"
    )
    assert small.status_code == 201, small.content
    big = operator.post(
        "/api/v1/events/", {"name": "invoice.paid", "data": {"amount": 50}}, format="json"
    )
    assert big.status_code == 201, big.content
    wait_status(run.job_id, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=run.job_id).result["output"] == 50
    assert WorkflowRun.objects.filter(workflow=flow).count() == 1  # the slot fired once


def test_chat_with_a_workflow_in_the_terminal(acme, monkeypatch):
    make(
        acme,
        {
            "triggers": [{"type": "message"}],
            "nodes": [
                {
                    "id": "reply",
                    "type": "transform",
                    "config": {"set": {"n": "size(input.history)"}},
                }
            ],
            "output": "{{ input.message }} ({{ vars.n }} before)",
        },
        slug="echo",
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nagain\n\n"))
    out = io.StringIO()
    call_command("chat", "--workflow", "echo", "--session", "s1", "--timeout", "30", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Chatting with workflow echo, session s1")
    assert lines[1:] == ["hello (0 before)", "again (2 before)"]
