"""Definitions checked with field paths (nothing saved on an error), versions, and the
workflows, workflow-runs and events API with its roles and organization scoping."""

import copy
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from agents.services import agent_create
from checkpoints.services import checkpoint_approve
from jobs.models import Job, JobStatus
from tests.factories import client_for, make_user
from tests.workflows.helpers import make, pending, settle
from workflows.expressions import ExpressionError, compile_expression, evaluate, render
from workflows.models import Event, Workflow, WorkflowRun, WorkflowVersion

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]

SIMPLE = {
    "input_schema": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}},
    },
    "nodes": [
        {
            "id": "greet",
            "type": "transform",
            "config": {"set": {"greeting": "'Hello, ' + input.name"}},
        },
        {"id": "ok", "type": "approval", "config": {"title": "{{ vars.greeting }}"}},
    ],
    "output": "{{ vars.greeting }}",
}


@pytest.fixture
def admin(acme) -> APIClient:
    return client_for("ada", acme, Role.ADMIN)


@pytest.fixture
def operator(acme) -> APIClient:
    return client_for("oscar", acme, Role.OPERATOR)


@pytest.fixture
def viewer(acme) -> APIClient:
    return client_for("vera", acme, Role.VIEWER)


def create(client: APIClient, definition: dict, slug: str = "greet"):
    return client.post(
        "/api/v1/workflows/",
        {"slug": slug, "name": slug.title(), "definition": definition},
        format="json",
    )


def node(node_id: str, node_type: str = "transform", **fields) -> dict:
    base: dict[str, Any] = {"id": node_id, "type": node_type}
    if node_type == "transform":
        base["config"] = {"set": {"x": "1"}}
    return {**base, **fields}


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"v": value}
    return value


@pytest.mark.parametrize(
    ("definition", "path", "words"),
    [
        ({"nodes": [node("a", "teleport")]}, "nodes.0.type", "is not one of"),
        ({"nodes": [node("a"), node("a")]}, "nodes.1.id", "also used at nodes.0"),
        (
            {"nodes": [node("a", config={"set": {"x": "steps.b.output"}}), node("b")]},
            "nodes.0.config.set.x",
            "steps.b",
        ),
        (
            {"nodes": [node("a", "http", config={"url": "{{ input. }}"})]},
            "nodes.0.config.url",
            "does not compile",
        ),
        ({"nodes": [node("a", "http", config={})]}, "nodes.0.config", "'url' is a required"),
        (
            {"nodes": [node("a", skip_if="[1].map(x, [1].map(y, [1].map(z, z)))")]},
            "nodes.0.skip_if",
            "nest at most",
        ),
        (
            {"nodes": [node("a", skip_if="[1].map(x, [1].exists(y, y == x))")]},
            "nodes.0.skip_if",
            "nest at most",
        ),
        ({"nodes": [node("a", skip_if="while(true)")]}, "nodes.0.skip_if", "does not compile"),
        ({"nodes": [node("a")], "variables": deep(130)}, "definition", "nested deeper than 128"),
        (
            {"nodes": [node("w", "wait_for_event", config={"event": "e", "timeout": 1e300})]},
            "nodes.0.config.timeout",
            "maximum",
        ),
        (
            {"nodes": [node("a", "llm", config={"provider": "nope", "model": "m", "prompt": "p"})]},
            "nodes.0.config.provider",
            "unknown provider",
        ),
        (
            {"nodes": [node("a", "input", config={"title": "t", "schema": {"type": "nope"}})]},
            "nodes.0.config.schema",
            "not a valid JSON Schema",
        ),
        ({"input_schema": {"type": 3}, "nodes": [node("a")]}, "input_schema", "JSON Schema"),
        (
            {"nodes": [node("a", "agent", config={"agent": "ghost", "task": "x"})]},
            "nodes.0.config.agent",
            "no agent 'ghost'",
        ),
        (
            {"nodes": [node("a", "workflow", config={"workflow": "nowhere"})]},
            "nodes.0.config.workflow",
            "no workflow 'nowhere'",
        ),
        (
            {"nodes": [node("a", "llm", config={"prompt": "x"})]},
            "nodes.0.config",
            "provider and a model",
        ),
        (
            {"nodes": [node("a")], "triggers": [{"type": "schedule", "cron": "every day"}]},
            "triggers.0.cron",
            "not a valid cron",
        ),
        (
            {
                "nodes": [node("a")],
                "triggers": [{"type": "schedule", "cron": "* * * * *", "timezone": "Mars/Olympus"}],
            },
            "triggers.0.timezone",
            "unknown time zone",
        ),
        (
            {
                "nodes": [
                    node(
                        "p",
                        "parallel",
                        config={
                            "branches": [
                                {"nodes": [node("a")]},
                                {"nodes": [node("b", config={"set": {"y": "steps.a.output"}})]},
                            ]
                        },
                    )
                ]
            },
            "nodes.0.config.branches.1.nodes.0.config.set.y",
            "steps.a",
        ),
    ],
)
def test_a_bad_definition_is_a_400_with_the_field_path_and_nothing_is_saved(
    admin, definition, path, words
):
    response = create(admin, definition)
    assert response.status_code == 400, response.json()
    fields = response.json()["error"]["fields"]
    assert path in fields, fields
    assert any(words in message for message in fields[path]), fields[path]
    assert not Workflow.objects.exists() and not WorkflowVersion.objects.exists()


def test_a_cycle_through_workflow_nodes_is_refused(admin):
    assert create(admin, {"nodes": [node("a")]}, slug="first").status_code == 201
    second = {"nodes": [node("call", "workflow", config={"workflow": "first"})]}
    assert create(admin, second, slug="second").status_code == 201
    first_id = Workflow.objects.get(slug="first").pk
    looped = admin.patch(
        f"/api/v1/workflows/{first_id}/",
        {"definition": {"nodes": [node("back", "workflow", config={"workflow": "second"})]}},
        format="json",
    )
    assert looped.status_code == 400
    assert "first → second → first" in looped.json()["error"]["fields"]["nodes"][0]


def test_validate_answers_every_error_and_saves_nothing(operator):
    response = operator.post(
        "/api/v1/workflows/validate/",
        {"definition": {"nodes": [node("a", skip_if="input."), node("a")]}},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and set(body["errors"]) == {"nodes.0.skip_if", "nodes.1.id"}
    assert not Workflow.objects.exists()


def test_other_organizations_agents_are_not_found(acme, admin):
    globex = Organization.objects.create(name="Globex", slug="globex")
    agent_create(organization=globex, created_by=None, name="theirs")
    response = create(
        admin, {"nodes": [node("a", "agent", config={"agent": "theirs", "task": "x"})]}
    )
    assert "no agent 'theirs'" in response.json()["error"]["fields"]["nodes.0.config.agent"][0]


def test_versions_pin_runs_and_rollback_chooses_an_older_one(acme, admin, operator):
    created = create(admin, SIMPLE).json()
    assert created["version"] == 1
    url = f"/api/v1/workflows/{created['id']}/"
    edited = copy.deepcopy(SIMPLE)
    edited["nodes"][0]["config"]["set"]["greeting"] = "'Hi, ' + input.name"
    assert admin.patch(url, {"definition": edited}, format="json").json()["version"] == 2
    assert admin.patch(url, {"definition": edited}, format="json").json()["version"] == 2
    assert [v["number"] for v in admin.get(url + "versions/").json()] == [2, 1]
    rolled = admin.post(url + "set-version/", {"version": 1}, format="json").json()
    assert rolled["version"] == 1 and rolled["definition"] == SIMPLE

    run = operator.post(url + "run/", {"input": {"name": "Ada"}}, format="json")
    assert run.status_code == 201 and run.json()["version"] == 1


def test_run_input_is_checked_and_an_idempotency_key_repeats_the_run(admin, operator):
    workflow = create(admin, SIMPLE).json()
    url = f"/api/v1/workflows/{workflow['id']}/run/"
    bad = operator.post(url, {"input": {"name": 3}}, format="json")
    assert bad.status_code == 400 and "input.name" in bad.json()["error"]["fields"]
    first = operator.post(
        url, {"input": {"name": "Ada"}}, format="json", HTTP_IDEMPOTENCY_KEY="once"
    )
    again = operator.post(
        url, {"input": {"name": "Ada"}}, format="json", HTTP_IDEMPOTENCY_KEY="once"
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    stem = "k" * 200  # longer keys alike in their first 200 characters are two requests
    runs = [
        operator.post(url, {"input": {"name": "Ada"}}, format="json", HTTP_IDEMPOTENCY_KEY=key)
        for key in (f"{stem}-1", f"{stem}-1", f"{stem}-2")
    ]
    assert [r.status_code for r in runs] == [201, 200, 201]
    assert runs[0].json()["job_id"] == runs[1].json()["job_id"] != runs[2].json()["job_id"]
    # A plain job whose key is what a run's would be is not taken for that run.
    operator.post(
        "/api/v1/jobs/",
        {"job_type": "simple-task"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=f"workflow:{workflow['id']}:plain",
    )
    taken = operator.post(
        url, {"input": {"name": "Ada"}}, format="json", HTTP_IDEMPOTENCY_KEY="plain"
    )
    assert taken.status_code == 409, taken.json()
    assert WorkflowRun.objects.count() == 3  # "once", and the two long keys


def test_a_run_in_the_api_with_its_nodes(acme, admin, operator):
    workflow = create(admin, SIMPLE).json()
    started = operator.post(
        f"/api/v1/workflows/{workflow['id']}/run/", {"input": {"name": "Ada"}}, format="json"
    ).json()
    settle(started["job_id"])
    detail = operator.get(f"/api/v1/workflow-runs/{started['job_id']}/").json()
    nodes = {n["id"]: n for n in detail["nodes"]}
    assert detail["status"] == "waiting"
    assert nodes["greet"]["status"] == "succeeded"
    assert nodes["greet"]["output"] == {"greeting": "Hello, Ada"}
    assert nodes["ok"]["status"] == "waiting" and nodes["ok"]["checkpoint_id"]
    assert nodes["ok"]["input"]["title"] == "Hello, Ada"
    checkpoint_approve(
        checkpoint=pending(started["job_id"])[0], user=make_user("alice", approver=True)
    )
    settle(started["job_id"])
    done = operator.get(f"/api/v1/workflow-runs/{started['job_id']}/").json()
    assert done["status"] == "succeeded" and done["job"]["result"]["output"] == "Hello, Ada"
    listed = operator.get("/api/v1/workflow-runs/?workflow=greet&status=succeeded").json()
    assert [r["job_id"] for r in listed["results"]] == [started["job_id"]]


def test_cancel_and_retry_a_run(admin, operator):
    workflow = create(admin, SIMPLE).json()
    run = operator.post(
        f"/api/v1/workflows/{workflow['id']}/run/", {"input": {"name": "Ada"}}, format="json"
    ).json()
    settle(run["job_id"])
    cancelled = operator.post(f"/api/v1/workflow-runs/{run['job_id']}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    retried = operator.post(f"/api/v1/workflow-runs/{run['job_id']}/retry/")
    assert retried.json()["status"] == "queued"
    assert settle(run["job_id"]).status == JobStatus.WAITING  # asks again


def test_roles_and_organizations(acme, admin, operator, viewer):
    workflow = create(admin, SIMPLE).json()
    url = f"/api/v1/workflows/{workflow['id']}/"
    assert viewer.get(url).status_code == 200
    assert create(operator, SIMPLE, slug="nope").status_code == 403
    assert operator.patch(url, {"active": False}, format="json").status_code == 403
    assert viewer.post(url + "run/", {"input": {"name": "x"}}, format="json").status_code == 403
    assert viewer.post("/api/v1/events/", {"name": "x"}, format="json").status_code == 403
    outsider = client_for("gus", Organization.objects.create(name="G", slug="g"), Role.ADMIN)
    assert outsider.get(url).status_code == 404
    assert outsider.post(url + "run/", {"input": {"name": "x"}}, format="json").status_code == 404
    run = operator.post(url + "run/", {"input": {"name": "x"}}, format="json").json()
    assert outsider.get(f"/api/v1/workflow-runs/{run['job_id']}/").status_code == 404
    assert outsider.post(f"/api/v1/workflow-runs/{run['job_id']}/cancel/").status_code == 404
    assert outsider.get("/api/v1/workflow-runs/").json()["count"] == 0


def test_events_are_stored_once_per_key_and_start_triggered_workflows(acme, admin, operator):
    create(
        admin,
        {
            "nodes": [node("a")],
            "triggers": [
                {"type": "event", "event": "order.created", "filter": "event.data.total > 100"}
            ],
        },
        slug="big-orders",
    )
    first = operator.post(
        "/api/v1/events/",
        {"name": "order.created", "data": {"total": 250}, "idempotency_key": "o-1"},
        format="json",
    )
    again = operator.post(
        "/api/v1/events/",
        {"name": "order.created", "data": {"total": 250}, "idempotency_key": "o-1"},
        format="json",
    )
    small = operator.post(
        "/api/v1/events/", {"name": "order.created", "data": {"total": 5}}, format="json"
    )
    assert (first.status_code, again.status_code, small.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] and Event.objects.count() == 2
    runs = operator.get("/api/v1/workflow-runs/?workflow=big-orders").json()["results"]
    assert len(runs) == 1 and runs[0]["trigger"] == "event"  # once, and only for the big one
    assert runs[0]["event"] == first.json()["id"]
    # A key in the header is held to the field's limit, not cut to it (which would make
    # two long keys alike in their first 200 characters one event).
    long = operator.post(
        "/api/v1/events/", {"name": "order.created"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201
    )
    assert long.status_code == 400 and "idempotency_key" in long.json()["error"]["fields"]
    assert Event.objects.count() == 2


def test_node_types_give_their_config_schemas(viewer):
    types = {t["type"]: t for t in viewer.get("/api/v1/workflows/node-types/").json()}
    assert len(types) == 14 and types["http"]["config_schema"]["required"] == ["url"]


def test_expressions_are_bounded_and_never_python():
    with pytest.raises(ExpressionError, match="longer than"):
        compile_expression("1 + " * 600 + "1")
    with pytest.raises(ExpressionError, match="at most 4"):
        compile_expression(" + ".join(["size([1].map(x, x))"] * 5))
    with pytest.raises(ExpressionError, match="unknown function"):
        compile_expression("__import__('os')")
    with pytest.raises(ExpressionError, match="unknown"):
        compile_expression("lists.range(100000000)")
    with pytest.raises(ExpressionError, match="larger than"):
        evaluate("input.big + input.big", {"input": {"big": "x" * 40000}})
    assert render({"a": "{{ 1 + 2 }}", "b": "n={{ [1, 2] }}"}, {}) == {"a": 3, "b": "n=[1, 2]"}


def test_a_run_or_branch_job_cannot_be_made_through_the_jobs_api(acme, operator):
    """Not for another organization's version (its definition would run here), nor for
    one's own (the workflow's checks would be skipped)."""
    other = Organization.objects.create(name="Other", slug="other")
    secret = {"nodes": [{"id": "t", "type": "transform", "config": {"set": {"k": "'sk-x'"}}}]}
    theirs = make(other, secret, slug="theirs").current_version
    ours = make(acme, SIMPLE, slug="ours").current_version
    for version in (theirs, ours, None):
        input = {"version": version.pk, "checksum": version.checksum} if version else {}
        for job_type in ("workflow", "workflow-branch"):
            body = {"job_type": job_type, "input": {**input, "path": ["nodes"], "scope": {}}}
            response = operator.post("/api/v1/jobs/", body, format="json")
            assert response.status_code == 400, (job_type, version, response.content)
            assert "started through its workflow" in response.json()["error"]["message"]
    assert not Job.objects.filter(job_type__startswith="workflow").exists()


def test_the_admin_pages_of_workflows_runs_and_events(acme, admin):
    from django.test import Client

    flow = make(acme, SIMPLE)
    from tests.workflows.helpers import start

    run = start(flow, {"name": "Ada"})
    settle(run.job_id)
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    from accounts.models import Membership

    Membership.objects.create(user=staff, organization=acme, role=Role.ADMIN)
    client = Client()
    client.force_login(staff)
    assert client.get(f"/admin/workflows/workflow/{flow.pk}/change/").status_code == 200
    page = client.get(f"/admin/workflows/workflowrun/{run.job_id}/change/").content.decode()
    assert 'class="cs-nodes"' in page and "greet" in page
    assert client.get("/admin/workflows/event/").status_code == 200
    # adding one with a slug the organization has: the form says so (not a 500)
    taken = client.post(
        "/admin/workflows/workflow/add/",
        {"slug": flow.slug, "name": "Again", "definition": '{"nodes": []}', "active": "on"},
    )
    assert taken.status_code == 200 and "exists in the organization" in taken.content.decode()
    # events are a record: nobody deletes one (a run's waits say which it took)
    superuser = make_user("root")
    superuser.is_staff = superuser.is_superuser = True
    superuser.save()
    client.force_login(superuser)
    event = Event.objects.create(organization=acme, name="e")
    assert client.get(f"/admin/workflows/event/{event.pk}/delete/").status_code == 403
