"""The agent loop end to end: a real worker, the real OpenAI and Anthropic SDKs, and a
local server speaking their wire protocols."""

import json
from decimal import Decimal

import pytest

from agents.models import Agent, AgentStatus
from agents.services import agent_create, agent_execute
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import Job, JobEvent, JobStatus
from tests.llm_server import Reply, ToolCallReply
from tests.utils import wait_for, wait_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def tool_messages(body: dict) -> list[dict]:
    return [m for m in body["messages"] if m["role"] == "tool"]


def test_an_approved_edit_reaches_the_tool_and_the_costs_add_up(
    acme, reviewer, llm_server, settings
):
    agent = agent_create(
        organization=acme,
        created_by=None,
        name="coder",
        provider="openai",
        model="gpt-4o-mini",
        tools=["write_file"],
    )
    llm_server.script(
        Reply(
            tool_calls=[
                ToolCallReply("write_file", {"path": "plan.md", "content": "v1"}, pieces=3)
            ],
            tokens_in=100,
            tokens_out=20,
        ),
        Reply(
            text="I wrote the plan.", chunks=["I wrote", " the plan."], tokens_in=150, tokens_out=10
        ),
    )
    job = agent_execute(agent=agent, user=None, task="Write the plan")

    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job=job)
    assert checkpoint.payload == {
        "tool": "write_file",
        "arguments": {"path": "plan.md", "content": "v1"},
    }
    services.checkpoint_approve(
        checkpoint=checkpoint,
        user=reviewer,
        payload={"tool": "write_file", "arguments": {"path": "plan.md", "content": "v2 (edited)"}},
    )
    wait_status(job.pk, JobStatus.SUCCEEDED)

    workspace = settings.COUNTERSIGN_WORKSPACE_ROOT / str(job.pk)
    assert (workspace / "plan.md").read_text() == "v2 (edited)"
    second = llm_server.requests[1].body
    result = json.loads(tool_messages(second)[0]["content"])
    assert result["result"]["written"][0]["path"] == "plan.md"
    assert second["messages"][0]["role"] == "system" and second["stream"] is True
    assert llm_server.requests[0].api_key == "sk-test-openai-key"

    job.refresh_from_db()
    assert job.result["answer"] == "I wrote the plan."
    assert (job.tokens_in, job.tokens_out) == (250, 30)
    # gpt-4o-mini: $0.15 in, $0.60 out per million tokens
    assert (
        job.cost
        == Decimal("250") * Decimal("0.15") / 10**6 + Decimal("30") * Decimal("0.60") / 10**6
        == Decimal("0.0000555")
    )
    deltas = JobEvent.objects.filter(job=job, kind="llm.delta").order_by("seq")
    assert "".join(e.data["text"] for e in deltas) == "I wrote the plan."


def test_a_rejected_call_is_reported_to_the_model(acme, reviewer, llm_server):
    agent = agent_create(
        organization=acme,
        created_by=None,
        name="caller",
        provider="anthropic",
        model="claude-sonnet-4-0",
        tools=["http_request"],
    )
    llm_server.script(
        Reply(
            tool_calls=[ToolCallReply("http_request", {"url": "https://example.com/x"})],
            tokens_in=1000,
            tokens_out=50,
        ),
        Reply(text="Understood, I will not call it.", tokens_in=1200, tokens_out=8),
    )
    job = agent_execute(agent=agent, user=None, task="Fetch the page")
    wait_status(job.pk, JobStatus.WAITING)
    services.checkpoint_reject(
        checkpoint=Checkpoint.objects.get(job=job), user=reviewer, reason="not that host"
    )
    wait_status(job.pk, JobStatus.SUCCEEDED)

    reported = llm_server.requests[1].body["messages"][-1]["content"][0]
    assert reported["type"] == "tool_result"
    assert "a reviewer rejected this call: not that host" in json.dumps(reported)
    job.refresh_from_db()
    assert (job.tokens_in, job.tokens_out) == (2200, 58)
    assert job.cost == Decimal("0.0066") + Decimal("0.00087")  # $3 in, $15 out per million


def test_an_unknown_model_costs_unknown_and_a_bad_key_fails_clearly(acme, llm_server):
    agent = agent_create(
        organization=acme, created_by=None, name="new", provider="openai", model="gpt-9-preview"
    )
    llm_server.script(Reply(text="hi", tokens_in=5, tokens_out=1, model="gpt-9-preview"))
    job = agent_execute(agent=agent, user=None, task="hello")
    wait_status(job.pk, JobStatus.SUCCEEDED)
    job.refresh_from_db()
    assert (job.tokens_in, job.cost) == (5, None)

    from tests.llm_server import ErrorReply

    llm_server.script(ErrorReply(401, "Incorrect API key provided: sk-test-***"))
    failed = agent_execute(agent=agent, user=None, task="hello again")
    wait_status(failed.pk, JobStatus.FAILED)
    failed.refresh_from_db()
    assert "openai rejected the API key (401): check OPENAI_API_KEY" in failed.error_message
    assert "sk-test" not in failed.error_message + failed.error_traceback
    assert Job.objects.get(pk=failed.pk).attempts == 1


def test_a_capped_agent_runs_one_job_at_a_time_on_four_slots(acme, llm_server, more_slots):
    agent = agent_create(
        organization=acme,
        created_by=None,
        name="solo",
        provider="openai",
        model="gpt-4o-mini",
        max_concurrency=1,
    )
    llm_server.script(*[Reply(text=f"answer {n}", delay=0.3) for n in range(4)])
    jobs = [agent_execute(agent=agent, user=None, task=f"task {n}") for n in range(4)]

    wait_for(
        lambda: Agent.objects.get(pk=agent.pk).status == AgentStatus.BUSY,
        message="the agent to be busy",
    )
    for job in jobs:
        wait_status(job.pk, JobStatus.SUCCEEDED, timeout=60)

    runs = []
    for job in jobs:
        events = {
            e.kind: e.created_at
            for e in JobEvent.objects.filter(job=job, kind__in=["job.started", "job.succeeded"])
        }
        runs.append((events["job.started"], events["job.succeeded"]))
    runs.sort()
    for (_, ended), (started, _) in zip(runs, runs[1:], strict=False):
        assert started >= ended, "two runs of the agent overlapped"
    # With four free slots, the cap is what kept them apart.
    assert JobEvent.objects.filter(
        job__in=jobs, kind="job.waiting", data__reason="concurrency"
    ).exists()
    # The last run's end is written before its slot is released (which sets the status).
    wait_for(
        lambda: Agent.objects.get(pk=agent.pk).status == AgentStatus.IDLE,
        message="the agent to be idle again",
    )


def test_run_job_starts_a_child_and_resumes_when_it_ends(acme):
    agent = agent_create(organization=acme, created_by=None, name="boss", tools=["run_job"])
    task = 'Delegate.\n/tool run_job {"job_type": "simple-task", "input": {"steps": 2}}'
    job = agent_execute(agent=agent, user=None, task=task)

    wait_status(job.pk, JobStatus.SUCCEEDED)

    child = Job.objects.get(parent=job)
    assert (child.status, child.organization_id) == (JobStatus.SUCCEEDED, acme.pk)
    job.refresh_from_db()
    assert '"status": "succeeded"' in job.result["answer"]
    kinds = list(JobEvent.objects.filter(job=job).values_list("kind", flat=True))
    assert "job.waiting" in kinds and "job.woken" in kinds  # it held no worker meanwhile


def test_the_chat_command_streams_a_reply(acme, monkeypatch):
    import io

    from django.core.management import call_command

    agent_create(organization=acme, created_by=None, name="chatty")
    monkeypatch.setattr("sys.stdin", io.StringIO("Tell me about the release\n\n"))
    out = io.StringIO()
    call_command("chat", "chatty", "--session", "cli-1", "--timeout", "30", stdout=out)

    text = out.getvalue()
    assert "Chatting with chatty (offline/offline-echo), session cli-1" in text
    assert "Offline answer: I would now work on: Tell me about the release" in text
    assert Job.objects.get().input["session_id"] == "cli-1"


def test_code_generation_drafts_with_the_agents_model_and_still_asks_first(
    acme, reviewer, llm_server, settings
):
    from jobs.services import job_create

    agent = agent_create(
        organization=acme, created_by=None, name="dev", provider="openai", model="gpt-4o"
    )
    files = {"files": [{"path": "app/hello.py", "content": "print('hi')\n"}]}
    llm_server.script(
        Reply(text=f"```json\n{json.dumps(files)}\n```", tokens_in=400, tokens_out=60)
    )
    job = job_create(
        job_type="code-generation",
        organization=acme,
        input={"prompt": "a greeting script", "agent_id": agent.pk},
    )

    wait_status(job.pk, JobStatus.WAITING)
    workspace = settings.COUNTERSIGN_WORKSPACE_ROOT / str(job.pk)
    assert not (workspace / "app" / "hello.py").exists()
    checkpoint = Checkpoint.objects.get(job=job)
    assert [f["path"] for f in checkpoint.payload["files"]] == ["app/hello.py"]
    assert "JSON object" in llm_server.requests[0].body["messages"][0]["content"]
    services.checkpoint_approve(checkpoint=checkpoint, user=reviewer)
    wait_status(job.pk, JobStatus.SUCCEEDED)

    assert (workspace / "app" / "hello.py").read_text() == "print('hi')\n"
    job.refresh_from_db()
    assert (job.tokens_in, job.tokens_out) == (400, 60)
    assert job.cost == Decimal("0.001") + Decimal("0.0006")  # $2.50 in, $10 out per million
    assert len(llm_server.requests) == 1  # the resumed run replayed the memoized draft
