"""One request id from the API call to the job it created: stored on the job, and on
the log lines of the job's runs (in-process here; test_request_ids_worker.py runs the
job in the real worker)."""

import logging

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from checkpoints.models import Checkpoint
from core import logs
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import client_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captures the test's records with the bound context added, as the console
    handler adds it."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(logs.ContextFilter())
    return caplog


def create(client: APIClient, header: str | None = None, **body) -> dict:
    headers = {"HTTP_X_REQUEST_ID": header} if header is not None else {}
    response = client.post("/api/v1/jobs/", body, format="json", **headers)
    assert response.status_code == 201, response.json()
    assert response["X-Request-ID"] == response.json()["request_id"]
    return response.json()


def context_of(records: pytest.LogCaptureFixture, message: str) -> list[dict]:
    return [
        {name: getattr(r, name, None) for name in logs.FIELDS}
        for r in records.records
        if r.getMessage() == message
    ]


def test_a_job_keeps_the_request_id_of_the_call_that_created_it(operator, records):
    job = create(operator, "req-create-1", job_type="test-noop")

    assert job["request_id"] == "req-create-1"
    assert Job.objects.get(pk=job["id"]).request_id == "req-create-1"
    assert operator.get(f"/api/v1/jobs/{job['id']}/").json()["request_id"] == "req-create-1"
    assert context_of(records, "job created") == [
        {
            "request_id": "req-create-1",
            "job_id": job["id"],
            "job_type": "test-noop",
            "step_key": None,
            "checkpoint_id": None,
        }
    ]


def test_without_a_header_the_job_gets_the_generated_id(operator):
    job = create(operator, job_type="test-noop")
    assert len(job["request_id"]) == 32


def test_the_request_id_is_read_only(operator):
    job = create(operator, "req-ro", job_type="test-noop", request_id="forged")
    assert job["request_id"] == "req-ro"


def test_a_run_logs_its_job_request_and_step_keys(operator, records):
    job = create(operator, "req-run-1", job_type="test-logging")

    assert run_job(job["id"]) == JobStatus.SUCCEEDED

    steps = context_of(records, "step fetch working") + context_of(records, "step write working")
    assert [s["step_key"] for s in steps] == ["fetch", "write"]
    assert {(s["job_id"], s["request_id"], s["job_type"]) for s in steps} == {
        (job["id"], "req-run-1", "test-logging")
    }
    assert context_of(records, "job succeeded") == [
        {
            "request_id": "req-run-1",
            "job_id": job["id"],
            "job_type": "test-logging",
            "step_key": None,
            "checkpoint_id": None,
        }
    ]
    assert logs.current() == {}


def test_one_run_leaks_nothing_into_the_next(operator, records):
    first = create(operator, "req-first", job_type="test-logging")
    second = job_create(job_type="test-logging")  # not from a request: no request id
    assert second.request_id == ""

    with logs.bind(request_id="outer-request"):  # say, a request running jobs in-process
        assert run_job(first["id"]) == JobStatus.SUCCEEDED
        assert run_job(str(second.pk)) == JobStatus.SUCCEEDED
        assert logs.current() == {"request_id": "outer-request"}

    by_job = {r["job_id"]: r for r in context_of(records, "step write working")}
    assert by_job[first["id"]]["request_id"] == "req-first"
    assert by_job[str(second.pk)]["request_id"] is None
    assert [r["job_id"] for r in context_of(records, "job succeeded")] == [
        first["id"],
        str(second.pk),
    ]


def test_a_child_job_inherits_its_parents_request_id(operator):
    parent = Job.objects.get(pk=create(operator, "req-parent", job_type="test-noop")["id"])

    assert job_create(job_type="test-noop", parent=parent).request_id == "req-parent"
    with logs.bind(request_id="req-other"):
        assert job_create(job_type="test-noop", parent=parent).request_id == "req-other"


def test_checkpoint_lines_carry_the_checkpoint_id(operator, acme, records):
    job = create(operator, "req-cp", job_type="test-approval")
    assert run_job(job["id"]) == JobStatus.WAITING
    checkpoint = Checkpoint.objects.get(job_id=job["id"])

    assert context_of(records, "checkpoint opened (approval)") == [
        {
            "request_id": "req-cp",
            "job_id": job["id"],
            "job_type": "test-approval",
            "step_key": "go",
            "checkpoint_id": checkpoint.pk,
        }
    ]

    approver = client_for("april", acme, Role.APPROVER)
    approved = approver.post(
        f"/api/v1/checkpoints/{checkpoint.pk}/approve/",
        {},
        format="json",
        HTTP_X_REQUEST_ID="req-decide",
    )
    assert approved.status_code == 200, approved.json()
    decided = [
        r for r in records.records if r.getMessage() == f"checkpoint {checkpoint.pk} approved"
    ]
    assert len(decided) == 1
    assert (decided[0].checkpoint_id, decided[0].job_id, decided[0].request_id) == (
        checkpoint.pk,
        job["id"],
        "req-decide",
    )
