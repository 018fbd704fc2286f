"""The agent-task loop, run in-process with the offline provider: tools that ask
first, edits and rejections, tool errors, memory search and turn limits."""

import json
import time

import pytest

from accounts.models import Organization
from agents import memory
from agents.models import Agent
from agents.services import agent_create, agent_execute
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def writer(acme: Organization, **fields) -> Agent:
    return agent_create(
        organization=acme,
        created_by=None,
        name="writer",
        tools=["write_file", "search_memory"],
        **fields,
    )


def start(agent: Agent, task: str) -> Job:
    job = agent_execute(agent=agent, user=None, task=task)
    return job


def tool_task(name: str, **arguments) -> str:
    return f"Please do it.\n/tool {name} {json.dumps(arguments)}"


def test_a_tool_that_requires_approval_runs_with_the_reviewers_edits(acme, reviewer, tmp_path):
    job = start(writer(acme), tool_task("write_file", path="notes.txt", content="draft"))
    assert run_job(str(job.pk)) == JobStatus.WAITING
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.payload == {
        "tool": "write_file",
        "arguments": {"path": "notes.txt", "content": "draft"},
    }
    assert checkpoint.title == "writer wants to call write_file"
    assert not (tmp_path / str(job.pk) / "notes.txt").exists()  # nothing before approval

    services.checkpoint_approve(
        checkpoint=checkpoint,
        user=reviewer,
        payload={
            "tool": "write_file",
            "arguments": {"path": "final.txt", "content": "approved text"},
        },
    )
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED

    assert (tmp_path / str(job.pk) / "final.txt").read_text() == "approved text"
    assert not (tmp_path / str(job.pk) / "notes.txt").exists()
    job.refresh_from_db()
    assert job.result["turns"] == 2 and "final.txt" in job.result["answer"]
    assert [s.key for s in job.steps.order_by("position")] == [
        "prompt",
        "llm:1",
        "tool:1:0:approve",
        "tool:1:0:run",
        "llm:2",
    ]


def test_an_edit_that_leaves_the_workspace_is_refused_at_approval(acme, reviewer):
    job = start(writer(acme), tool_task("write_file", path="a.txt", content="x"))
    run_job(str(job.pk))
    checkpoint = Checkpoint.objects.get(job=job)
    with pytest.raises(services.CheckpointValidationError) as refused:
        services.checkpoint_approve(
            checkpoint=checkpoint,
            user=reviewer,
            payload={
                "tool": "write_file",
                "arguments": {"path": "../../etc/passwd", "content": "x"},
            },
        )
    assert "arguments.path" in refused.value.fields
    with pytest.raises(services.CheckpointValidationError):
        services.checkpoint_approve(
            checkpoint=checkpoint,
            user=reviewer,
            payload={"tool": "http_request", "arguments": {"url": "x"}},
        )


def test_a_rejection_is_reported_to_the_model_or_fails_the_job(acme, reviewer, tmp_path):
    reported = start(writer(acme), tool_task("write_file", path="a.txt", content="x"))
    run_job(str(reported.pk))
    services.checkpoint_reject(
        checkpoint=Checkpoint.objects.get(job=reported), user=reviewer, reason="not now"
    )
    assert run_job(str(reported.pk)) == JobStatus.SUCCEEDED
    reported.refresh_from_db()
    assert "a reviewer rejected this call: not now" in reported.result["answer"]
    assert not (tmp_path / str(reported.pk)).exists()

    strict = agent_create(
        organization=acme,
        created_by=None,
        name="strict",
        tools=["write_file"],
        on_tool_rejection="fail",
    )
    failed = start(strict, tool_task("write_file", path="a.txt", content="x"))
    run_job(str(failed.pk))
    services.checkpoint_reject(
        checkpoint=Checkpoint.objects.get(job=failed), user=reviewer, reason="no"
    )
    assert run_job(str(failed.pk)) == JobStatus.REJECTED


def test_tools_without_approval_bad_arguments_and_unoffered_tools(acme):
    agent = writer(acme)
    memory.remember(agent, "The deploy window is Tuesday at 14:00.")
    memory.remember(agent, "Lunch is at noon.")
    found = start(agent, tool_task("search_memory", query="when is the deploy window"))
    assert run_job(str(found.pk)) == JobStatus.SUCCEEDED
    found.refresh_from_db()
    assert "Tuesday at 14:00" in found.result["answer"]
    assert not Checkpoint.objects.filter(job=found).exists()

    bad = start(agent, tool_task("write_file", path="a.txt"))
    assert run_job(str(bad.pk)) == JobStatus.SUCCEEDED  # the model hears what was wrong
    bad.refresh_from_db()
    assert (
        "invalid arguments" in bad.result["answer"]
        and "'content' is a required" in bad.result["answer"]
    )


def test_memory_search_ranks_by_similarity(acme):
    agent = writer(acme)
    for text in (
        "Invoices are paid on the first of the month.",
        "The staging database is backed up nightly.",
        "Invoices above 10k need two approvals.",
    ):
        memory.remember(agent, text)
    hits = memory.search(agent, "which invoices need approvals", limit=2)  # lexical embedder
    assert [h["content"] for h in hits][0] == "Invoices above 10k need two approvals."
    assert all("invoice" in h["content"].lower() for h in hits)


def test_the_turn_limit_ends_the_job(acme):
    agent = agent_create(
        organization=acme, created_by=None, name="loop", tools=["search_memory"], max_turns=1
    )
    job = start(agent, tool_task("search_memory", query="x"))
    assert run_job(str(job.pk)) == JobStatus.FAILED
    job.refresh_from_db()
    assert "no final answer after 1 turns" in job.error_message


def test_a_provider_without_a_key_fails_with_a_message_a_person_can_act_on(acme, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    agent = agent_create(
        organization=acme,
        created_by=None,
        name="claude",
        provider="anthropic",
        model="claude-sonnet-4-0",
    )
    job = start(agent, "hello")
    assert run_job(str(job.pk)) == JobStatus.FAILED
    job.refresh_from_db()
    assert "set ANTHROPIC_API_KEY in the environment of the workers" in job.error_message
    assert job.attempts == 1  # not retried: retrying cannot help


def test_streamed_text_is_coalesced_without_holding_back_the_tail():
    from agents.llm import StreamCoalescer

    emitted: list[tuple[float, dict]] = []
    coalescer = StreamCoalescer(
        lambda kind, data: emitted.append((time.monotonic(), data)), turn=1, interval=0.2
    )
    started = time.monotonic()
    for word in ("a", "b", "c", "d"):
        coalescer(word)
    assert [e[1]["text"] for e in emitted] == ["a"]  # the first chunk goes at once
    deadline = time.monotonic() + 5
    while len(emitted) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the timer's flush, bounded
    assert [e[1]["text"] for e in emitted] == ["a", "bcd"]
    assert 0.15 <= emitted[1][0] - started < 1.0  # sent by the timer, not by a later chunk
