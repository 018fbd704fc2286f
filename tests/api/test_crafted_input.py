"""Crafted input is a 4xx with the shared error shape and writes nothing; facts about
other organizations do not leak through filters, worker status or the admin."""

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, Role
from agents.services import agent_create
from checkpoints.models import Checkpoint
from checkpoints.services import checkpoint_approve
from core.parsers import MAX_BODY_DEPTH
from jobs.follow import event_number
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def paused(operator: APIClient) -> tuple[str, int]:
    body = {"job_type": "code-generation", "input": {"prompt": "hello"}}
    job = operator.post("/api/v1/jobs/", body, format="json").json()
    assert run_job(job["id"]) == JobStatus.WAITING
    return job["id"], Checkpoint.objects.get(job_id=job["id"]).pk


def post_raw(client: APIClient, url: str, raw: str) -> Any:
    return client.generic("POST", url, raw, content_type="application/json")


@pytest.mark.parametrize("levels", [MAX_BODY_DEPTH + 1, 100_000])
def test_a_body_nested_too_deep_is_a_400(operator, approver, levels):
    deep = nested(levels)
    response = post_raw(
        operator, "/api/v1/jobs/", f'{{"job_type": "simple-task", "input": {{"x": {deep}}}}}'
    )
    assert response.status_code == 400, response.content
    assert "nested deeper" in response.json()["error"]["message"]
    _, checkpoint_id = paused(operator)
    decided = post_raw(
        approver, f"/api/v1/checkpoints/{checkpoint_id}/approve/", f'{{"payload": {deep}}}'
    )
    assert decided.status_code == 400
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "pending"
    assert Job.objects.count() == 1


def test_job_input_deeper_than_a_stored_document_may_be_is_refused(operator):
    value: Any = {}
    for _ in range(130):
        value = {"v": value}
    response = operator.post(
        "/api/v1/jobs/", {"job_type": "simple-task", "input": value}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "nested deeper than 128" in str(response.json()["error"])
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"job_type": "simple-task", "input": {"note": "a\\u0000b"}}',
        '{"job_type": "simple-task", "input": {"a\\u0000": 1}}',
    ],
)
def test_a_nul_character_anywhere_in_a_body_is_a_400(operator, approver, raw):
    response = post_raw(operator, "/api/v1/jobs/", raw)
    assert response.status_code == 400 and "NUL" in response.json()["error"]["message"]
    _, checkpoint_id = paused(operator)
    edit = '{"payload": {"files": [{"path": "a.py", "content": "x\\u0000y"}]}}'
    decided = post_raw(approver, f"/api/v1/checkpoints/{checkpoint_id}/approve/", edit)
    assert decided.status_code == 400
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "pending"


@pytest.mark.parametrize("after", ["²", "1²", "-1", "99999999999999999999", "0x10"])
def test_an_event_number_must_be_plain_digits_and_bounded(operator, after):
    job_id, _ = paused(operator)
    assert operator.get(f"/api/v1/jobs/{job_id}/events/", {"after": after}).status_code == 400
    assert event_number(after) is None  # the stream's rule (its 400: test_job_stream.py)


def test_a_file_name_too_long_is_refused_when_approved(operator, approver):
    _, checkpoint_id = paused(operator)
    edit = {"payload": {"files": [{"path": "a" * 300 + ".py", "content": ""}]}}
    decided = approver.post(f"/api/v1/checkpoints/{checkpoint_id}/approve/", edit, format="json")
    assert decided.status_code == 400, decided.content
    assert "longer than 255 bytes" in str(decided.json()["error"]["fields"])
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "pending"


# --- facts of other organizations ----------------------------------------------------


def test_the_checkpoint_job_filter_answers_alike_for_unknown_and_foreign_jobs(acme, operator):
    other = Organization.objects.create(name="Globex", slug="globex")
    theirs = job_create(job_type="simple-task", organization=other)
    unknown = "6f1c2a0e-0000-4000-8000-000000000000"
    for job_id in (str(theirs.pk), unknown):
        response = operator.get("/api/v1/checkpoints/", {"job": job_id})
        assert response.status_code == 200 and response.json()["results"] == []
    assert operator.get("/api/v1/checkpoints/", {"job": "nope"}).status_code == 400


def test_the_admin_offers_only_the_job_types_the_user_can_see(acme):
    other = Organization.objects.create(name="Globex", slug="globex")
    for organization, job_type in ((acme, "code-generation"), (other, "test-approval")):
        job = job_create(job_type=job_type, input={"prompt": "x"}, organization=organization)
        run_job(str(job.pk))
    assert Checkpoint.objects.count() == 2
    staff = make_user("stan")
    staff.is_staff = True
    staff.save()
    Membership.objects.create(user=staff, organization=acme, role=Role.ADMIN)
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/checkpoints/checkpoint/").content.decode()
    assert "job__job_type=code-generation" in page
    assert "test-approval" not in page


@pytest.mark.parametrize(
    ("job_type", "words"),
    [("nonesuch", "nonesuch"), ("workflow", "started through its workflow")],
)
def test_a_child_job_refused_is_told_to_the_model_not_fatal(acme, job_type, words):
    agent = agent_create(organization=acme, created_by=None, name="boss", tools=["run_job"])
    job = job_create(
        job_type="agent-task",
        organization=acme,
        input={"agent_id": agent.pk, "task": f'/tool run_job {{"job_type": "{job_type}"}}'},
    )
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert words in job.result["answer"]
    assert not job.children.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:18999\\@api.example.com/",
        "http://127.0.0.1%23@api.example.com:18999/",
        "http://user@api.example.com/",
        "http://api.example.com:99999/",
        "http://api.example.com/a b",
    ],
)
def test_a_url_whose_host_could_be_read_two_ways_is_a_tool_error(acme, settings, url):
    """The allow-list checks the host the request reaches; a refusal is told to the model."""
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = ["api.example.com"]
    agent = agent_create(organization=acme, created_by=None, name="web", tools=["http_request"])
    job = job_create(
        job_type="agent-task",
        organization=acme,
        input={"agent_id": agent.pk, "task": "/tool http_request " + json.dumps({"url": url})},
    )
    assert run_job(str(job.pk)) == JobStatus.WAITING  # a person approves the request first
    checkpoint_approve(
        checkpoint=Checkpoint.objects.get(job=job), user=make_user("ann", approver=True)
    )
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    answer = job.result["answer"]
    assert any(words in answer for words in ("host part", "not a valid URL", "spaces"))


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"]
)
def test_a_body_that_is_not_json_is_a_415_and_writes_nothing(operator, content_type):
    response = operator.generic("POST", "/api/v1/jobs/", "job_type=simple-task", content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not Job.objects.exists()
