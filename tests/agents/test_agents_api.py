"""/api/v1/agents/: configuration with field errors, roles, soft delete, runs,
executions and statistics."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from agents.models import Agent
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from tests.factories import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


@pytest.fixture
def admin(acme) -> APIClient:
    return client_for("ada", acme, Role.ADMIN)


@pytest.fixture
def operator(acme) -> APIClient:
    return client_for("oscar", acme, Role.OPERATOR)


@pytest.fixture
def viewer(acme) -> APIClient:
    return client_for("vera", acme, Role.VIEWER)


def make_agent(client: APIClient, **fields) -> dict:
    body = {"name": "helper", "provider": "offline", "model": "offline-echo", **fields}
    response = client.post("/api/v1/agents/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_admin_configures_an_agent(admin):
    agent = make_agent(
        admin,
        description="Writes things",
        tools=["write_file", "search_memory"],
        parameters={"temperature": 0.2, "max_tokens": 500},
        personality={"traits": ["careful"], "tone": "plain"},
        instructions="Answer briefly.",
    )
    assert agent["tools"] == ["write_file", "search_memory"] and agent["status"] == "idle"
    assert agent["created_by"] == "ada"

    changed = admin.patch(f"/api/v1/agents/{agent['id']}/", {"status": "offline"}, format="json")
    assert changed.json()["status"] == "offline"
    listed = admin.get("/api/v1/agents/?status=offline&search=things").json()["results"]
    assert [a["name"] for a in listed] == ["helper"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"provider": "skynet"}, "provider", "unknown provider 'skynet'"),
        (
            {"provider": "anthropic", "model": "gpt-4o"},
            "model",
            "'gpt-4o' is not a anthropic model",
        ),
        ({"tools": ["rm_rf"]}, "tools", "unknown tool(s) rm_rf"),
        ({"parameters": {"temperature": 3}}, "parameters", "temperature must be between 0 and 2"),
        ({"parameters": {"max_tokens": 1.5}}, "parameters", "max_tokens must be an integer"),
        ({"parameters": {"seed": 1}}, "parameters", "unknown parameter 'seed'"),
        ({"personality": {"mood": "x"}}, "personality", "an object with only"),
        (
            {
                "provider": "anthropic",
                "model": "claude-sonnet-4-0",
                "parameters": {"temperature": 0.2},
            },
            "parameters",
            "anthropic does not accept temperature; it accepts max_tokens, stop",
        ),
    ],
)
def test_bad_configuration_gets_field_errors(admin, fields, field, message):
    response = admin.post(
        "/api/v1/agents/", {"name": "x", "model": "offline-echo", **fields}, format="json"
    )
    assert response.status_code == 400
    assert message in " ".join(response.json()["error"]["fields"][field])
    assert not Agent.objects.exists()


def test_a_model_is_checked_against_the_provider_on_update(admin):
    agent = make_agent(admin)
    response = admin.patch(f"/api/v1/agents/{agent['id']}/", {"provider": "openai"}, format="json")
    assert response.status_code == 400
    assert "'offline-echo' is not a openai model" in response.json()["error"]["fields"]["model"]
    ok = admin.patch(
        f"/api/v1/agents/{agent['id']}/",
        {"provider": "openai", "model": "gpt-4o-mini"},
        format="json",
    )
    assert ok.json()["provider"] == "openai"


def test_parameters_are_checked_against_the_provider_on_update(admin):
    agent = make_agent(
        admin, provider="anthropic", model="claude-sonnet-4-0", parameters={"max_tokens": 300}
    )
    response = admin.patch(
        f"/api/v1/agents/{agent['id']}/", {"parameters": {"top_p": 0.9}}, format="json"
    )
    assert response.status_code == 400
    assert "anthropic does not accept top_p" in response.json()["error"]["fields"]["parameters"][0]
    moved = admin.patch(
        f"/api/v1/agents/{agent['id']}/",
        {"provider": "openai", "model": "gpt-4o", "parameters": {"top_p": 0.9}},
        format="json",
    )
    assert moved.status_code == 200 and moved.json()["parameters"] == {"top_p": 0.9}
    back = admin.patch(
        f"/api/v1/agents/{agent['id']}/",
        {"provider": "anthropic", "model": "claude-sonnet-4-0"},
        format="json",
    )
    assert back.status_code == 400  # its top_p would be dropped silently


def test_names_are_unique_per_organization_until_deleted(admin):
    first = make_agent(admin)
    duplicate = admin.post(
        "/api/v1/agents/", {"name": "helper", "model": "offline-echo"}, format="json"
    )
    assert duplicate.json()["error"]["fields"]["name"] == [
        "an agent with this name exists in the organization"
    ]
    assert admin.delete(f"/api/v1/agents/{first['id']}/").status_code == 204
    assert admin.get(f"/api/v1/agents/{first['id']}/").status_code == 404
    assert Agent.objects.get(pk=first["id"]).deleted_at is not None  # soft
    make_agent(admin)


def test_roles_and_organizations(admin, operator, viewer):
    agent = make_agent(admin)
    assert viewer.get(f"/api/v1/agents/{agent['id']}/").status_code == 200
    assert viewer.post("/api/v1/agents/", {"name": "v"}, format="json").status_code == 403
    assert (
        operator.patch(f"/api/v1/agents/{agent['id']}/", {"name": "o"}, format="json").status_code
        == 403
    )
    assert (
        viewer.post(
            f"/api/v1/agents/{agent['id']}/execute/", {"task": "x"}, format="json"
        ).status_code
        == 403
    )
    outsider = client_for("gus", Organization.objects.create(name="G", slug="g"), Role.ADMIN)
    assert outsider.get(f"/api/v1/agents/{agent['id']}/").status_code == 404
    assert (
        outsider.post(
            f"/api/v1/agents/{agent['id']}/execute/", {"task": "x"}, format="json"
        ).status_code
        == 404
    )
    refused = outsider.post(
        "/api/v1/jobs/",
        {"job_type": "agent-task", "input": {"agent_id": agent["id"], "task": "x"}},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["input.agent_id"]


def test_execute_runs_an_agent_task_and_counts_it(admin, operator):
    agent = make_agent(admin)
    started = operator.post(
        f"/api/v1/agents/{agent['id']}/execute/",
        {"task": "Summarise the plan", "context": {"team": "ops"}, "max_tokens": 5},
        format="json",
    )
    assert started.status_code == 202
    job = started.json()
    assert (job["job_type"], job["concurrency_key"], job["status"]) == (
        "agent-task",
        f"agent:{agent['id']}",
        "queued",
    )
    assert job["input"] == {
        "agent_id": agent["id"],
        "task": "Summarise the plan",
        "context": {"team": "ops"},
        "max_tokens": 5,
    }

    assert run_job(job["id"]) == JobStatus.SUCCEEDED
    done = Job.objects.get(pk=job["id"])
    assert done.result["answer"] == "Offline answer: I would now"  # 5 tokens at most
    assert (done.tokens_out, done.cost) == (5, Decimal("0"))

    failed = operator.post(
        f"/api/v1/agents/{agent['id']}/execute/", {"task": "x"}, format="json"
    ).json()
    Job.objects.filter(pk=failed["id"]).update(status=JobStatus.FAILED)
    executions = operator.get(f"/api/v1/agents/{agent['id']}/executions/?status=succeeded")
    assert executions.status_code == 200, executions.json()
    assert [j["id"] for j in executions.json()["results"]] == [job["id"]]
    stats = operator.get(f"/api/v1/agents/{agent['id']}/statistics/").json()
    assert (stats["executions"], stats["finished"], stats["succeeded"]) == (2, 2, 1)
    assert stats["success_rate"] == 0.5


def test_an_offline_or_deleted_agent_does_not_run(admin, operator):
    agent = make_agent(admin, status="offline")
    response = operator.post(f"/api/v1/agents/{agent['id']}/execute/", {"task": "x"}, format="json")
    assert response.status_code == 400 and "is offline" in response.json()["error"]["message"]
    bad = operator.post(
        "/api/v1/jobs/", {"job_type": "agent-task", "input": {"task": 1}}, format="json"
    )
    assert bad.status_code == 400 and "agent_id" in bad.json()["error"]["message"]


def test_chat_keeps_the_conversation_of_a_session(admin, operator):
    agent = make_agent(admin)
    url = f"/api/v1/agents/{agent['id']}/chat/"
    first = operator.post(
        url, {"session_id": "s1", "message": "My name is Ada."}, format="json"
    ).json()
    assert run_job(first["id"]) == JobStatus.SUCCEEDED
    second = operator.post(
        url, {"session_id": "s1", "message": "What is my name?"}, format="json"
    ).json()
    assert run_job(second["id"]) == JobStatus.SUCCEEDED

    prompt = Job.objects.get(pk=second["id"]).steps.get(key="prompt").output
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"] == "My name is Ada."
    other = operator.post(url, {"session_id": "s2", "message": "hi"}, format="json").json()
    assert run_job(other["id"]) == JobStatus.SUCCEEDED
    assert [
        m["role"] for m in Job.objects.get(pk=other["id"]).steps.get(key="prompt").output or []
    ] == ["system", "user"]


def test_a_malformed_agent_id_is_not_found(viewer):
    assert viewer.get("/api/v1/agents/x%F3/executions/").status_code == 404  # found by schemathesis


def test_the_removed_agent_field_and_filter_are_refused_not_ignored(admin, operator):
    agent = make_agent(admin)
    created = operator.post(
        "/api/v1/jobs/",
        {"job_type": "code-generation", "agent": agent["id"], "input": {"prompt": "x"}},
        format="json",
    )
    assert created.status_code == 400
    assert "input.agent_id" in created.json()["error"]["fields"]["agent"][0]
    listed = operator.get(f"/api/v1/jobs/?agent={agent['id']}")
    assert (
        listed.status_code == 400
        and "concurrency_key" in listed.json()["error"]["fields"]["agent"][0]
    )

    operator.post(f"/api/v1/agents/{agent['id']}/execute/", {"task": "x"}, format="json")
    operator.post("/api/v1/jobs/", {"job_type": "simple-task"}, format="json")
    mine = operator.get(f"/api/v1/jobs/?concurrency_key=agent:{agent['id']}").json()["results"]
    assert [job["job_type"] for job in mine] == ["agent-task"]


def test_long_idempotency_keys_alike_in_their_first_200_characters_are_two_requests(
    admin, operator
):
    agent = make_agent(admin)

    def execute(key: str) -> str:
        response = operator.post(
            f"/api/v1/agents/{agent['id']}/execute/",
            {"task": "x"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )
        assert response.status_code == 202, response.json()
        return str(response.json()["id"])

    stem = "k" * 200
    first, again, other = execute(f"{stem}-1"), execute(f"{stem}-1"), execute(f"{stem}-2")
    assert first == again != other
