"""The REST API: who may do what, tenant isolation, and the error shapes."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from checkpoints.models import Checkpoint
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from tests.factories import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


@pytest.fixture
def viewer(acme) -> APIClient:
    return client_for("vera", acme, Role.VIEWER)


@pytest.fixture
def outsider() -> APIClient:
    other = Organization.objects.create(name="Globex", slug="globex")
    return client_for("gus", other, Role.ADMIN)


def create(client: APIClient, **body) -> dict:
    response = client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def paused_code_generation(operator: APIClient) -> tuple[str, int]:
    job = create(operator, job_type="code-generation", input={"prompt": "hello"})
    assert run_job(job["id"]) == JobStatus.WAITING
    return job["id"], Checkpoint.objects.get(job_id=job["id"]).pk


def test_unauthenticated_calls_are_refused():
    anonymous = APIClient()
    assert anonymous.get("/api/v1/jobs/").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer cs_nope")
    response = bad.get("/api/v1/jobs/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_an_operator_creates_and_lists_jobs(operator, viewer):
    job = create(operator, job_type="simple-task", input={"a": 1}, priority=7)
    assert job["status"] == "queued" and job["priority"] == 7 and job["created_by"] == "oscar"

    listed = viewer.get("/api/v1/jobs/", {"status": "queued", "job_type": "simple-task"}).json()
    assert [j["id"] for j in listed["results"]] == [job["id"]]
    assert viewer.get(f"/api/v1/jobs/{job['id']}/").json()["input"] == {"a": 1}


def test_a_viewer_may_not_create_or_cancel(viewer, operator):
    assert (
        viewer.post("/api/v1/jobs/", {"job_type": "simple-task"}, format="json").status_code == 403
    )
    job = create(operator, job_type="simple-task")
    assert viewer.post(f"/api/v1/jobs/{job['id']}/cancel/").status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"job_type": "nope"}, "job_type"),
        ({"job_type": "simple-task", "priority": 12}, "priority"),
        ({"job_type": "simple-task", "input": [1, 2]}, "input"),
        ({}, "job_type"),
    ],
)
def test_bad_job_input_is_a_400_with_field_errors(operator, body, field):
    response = operator.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Job.objects.exists()


def test_the_same_idempotency_key_returns_the_same_job(operator):
    with CaptureQueriesContext(connection) as captured:
        first = operator.post(
            "/api/v1/jobs/", {"job_type": "simple-task"}, format="json", HTTP_IDEMPOTENCY_KEY="abc"
        )
    # Read before the next request: it empties the connection's log of queries.
    lookups = [q["sql"] for q in captured if q["sql"].startswith('SELECT "agents_job"')]
    assert len(lookups) == 1, lookups  # a new key is looked up once, not by the view again
    again = operator.post(
        "/api/v1/jobs/", {"job_type": "simple-task"}, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and Job.objects.count() == 1


def test_an_idempotency_key_is_not_reused_for_another_job_type(operator):
    first = operator.post(
        "/api/v1/jobs/", {"job_type": "simple-task"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    other = operator.post(
        "/api/v1/jobs/", {"job_type": "test-noop"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert (first.status_code, other.status_code) == (201, 409)
    assert "simple-task" in other.json()["error"]["message"]
    assert Job.objects.count() == 1


def test_another_organizations_objects_are_404(operator, outsider):
    job_id, checkpoint_id = paused_code_generation(operator)
    for url in (
        f"/api/v1/jobs/{job_id}/",
        f"/api/v1/jobs/{job_id}/events/",
        f"/api/v1/checkpoints/{checkpoint_id}/",
    ):
        response = outsider.get(url)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert outsider.post(f"/api/v1/checkpoints/{checkpoint_id}/approve/").status_code == 404
    assert outsider.get("/api/v1/jobs/").json()["count"] == 0


def test_a_decision_finds_its_checkpoint_in_the_lock_alone(operator, approver, outsider):
    """The decision views read the checkpoint once, locked, scoped to the caller's
    organization; an id that is none, or another organization's, is a 404."""
    _, checkpoint_id = paused_code_generation(operator)
    for bad in ("abc", "\u00b2", "-1", "9" * 20, str(checkpoint_id + 1000)):
        for verb in ("approve", "reject", "submit"):
            response = approver.post(f"/api/v1/checkpoints/{bad}/{verb}/", {}, format="json")
            assert response.status_code in (400, 404), (bad, verb, response.status_code)
        response = approver.post(f"/api/v1/checkpoints/{bad}/approve/", {}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert (
        outsider.post(f"/api/v1/checkpoints/{checkpoint_id}/reject/", {"reason": "x"}).status_code
        == 404
    )
    assert Checkpoint.objects.get(pk=checkpoint_id).status == "pending"

    with CaptureQueriesContext(connection) as captured:
        response = approver.post(f"/api/v1/checkpoints/{checkpoint_id}/approve/", {}, format="json")

    assert response.status_code == 200 and response.json()["checkpoint"]["status"] == "approved"
    reads = [q["sql"] for q in captured if 'FROM "checkpoints_checkpoint"' in q["sql"]]
    assert len(reads) == 1 and "FOR UPDATE" in reads[0], reads


def test_cancel_and_retry(operator):
    job = create(operator, job_type="simple-task")
    cancelled = operator.post(f"/api/v1/jobs/{job['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = operator.post(f"/api/v1/jobs/{job['id']}/cancel/")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]
    assert operator.post(f"/api/v1/jobs/{job['id']}/retry/").json()["status"] == "queued"


def test_steps_events_and_checkpoints_of_a_job(operator):
    job_id, _ = paused_code_generation(operator)
    steps = operator.get(f"/api/v1/jobs/{job_id}/steps/").json()
    assert [s["key"] for s in steps] == ["draft", "review", "write-files"]
    events = operator.get(f"/api/v1/jobs/{job_id}/events/").json()
    later = operator.get(f"/api/v1/jobs/{job_id}/events/", {"after": events[1]["seq"]}).json()
    assert later == events[2:]
    assert operator.get(f"/api/v1/jobs/{job_id}/events/", {"after": "x"}).status_code == 400
    checkpoints = operator.get(f"/api/v1/jobs/{job_id}/checkpoints/").json()
    assert checkpoints[0]["title"] == "Write 2 file(s)"


def test_an_approver_approves_and_a_second_decision_is_a_409(operator, approver, acme):
    job_id, checkpoint_id = paused_code_generation(operator)
    url = f"/api/v1/checkpoints/{checkpoint_id}/"

    approved = approver.post(url + "approve/", {"reason": "ok"}, format="json")
    assert approved.status_code == 200
    assert approved.json()["checkpoint"]["status"] == "approved"
    late = client_for("bert", acme, Role.APPROVER).post(
        url + "reject/", {"reason": "no"}, format="json"
    )
    assert late.status_code == 409
    assert late.json()["error"]["decision"]["user"] == "april"
    assert run_job(job_id) == JobStatus.SUCCEEDED


def test_decision_errors(operator, approver, viewer):
    _, checkpoint_id = paused_code_generation(operator)
    url = f"/api/v1/checkpoints/{checkpoint_id}/"

    assert viewer.post(url + "approve/").status_code == 403
    no_reason = approver.post(url + "reject/", {}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["error"]["fields"]
    bad_edit = approver.post(
        url + "approve/", {"payload": {"files": [{"path": "../x", "content": ""}]}}, format="json"
    )
    assert bad_edit.status_code == 400
    assert "files.0.path" in bad_edit.json()["error"]["fields"]
    not_input = approver.post(url + "submit/", {"data": {}}, format="json")
    assert not_input.status_code == 400


def test_pending_checkpoints_come_first_oldest_first(operator, approver):
    ids = [paused_code_generation(operator)[1] for _ in range(3)]
    approver.post(f"/api/v1/checkpoints/{ids[0]}/approve/", {}, format="json")
    listed = approver.get("/api/v1/checkpoints/").json()["results"]
    assert [c["id"] for c in listed] == [ids[1], ids[2], ids[0]]
    pending = approver.get("/api/v1/checkpoints/", {"status": "pending"}).json()
    assert pending["count"] == 2


def test_the_schema_documents_every_endpoint(viewer):
    schema = viewer.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = set(schema["paths"])
    assert {
        "/api/v1/jobs/",
        "/api/v1/jobs/{id}/cancel/",
        "/api/v1/checkpoints/{id}/approve/",
        "/api/v1/checkpoints/{id}/submit/",
    } <= paths


def test_a_date_filter_with_a_large_utc_offset_is_compared_in_utc(operator):
    # PostgreSQL refuses offsets past ±15:59; ISO 8601 allows them (schemathesis found it).
    create(operator, job_type="simple-task")
    response = operator.get("/api/v1/jobs/?created_after=2000-01-01T00:00:00%2B23:16")
    assert response.status_code == 200 and response.json()["count"] == 1
    far = operator.get("/api/v1/jobs/?created_before=0001-01-01T00:00:00%2B01:00")
    assert far.status_code == 400
