"""The request id from an API call served by uvicorn (ASGI) to the lines the session's
real Celery worker logs (as JSON: RUNTIME_ENV sets LOG_FORMAT=json) while running the job."""

import http.client
import json
from pathlib import Path

from accounts.models import Membership, Organization, Role
from accounts.services import token_issue
from jobs.models import Job
from jobs.processes import WorkerProcess
from tests.factories import make_user
from tests.utils import wait_for


def worker_lines(worker: WorkerProcess) -> list[dict]:
    lines = []
    for line in Path(worker.log_path).read_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:  # a line still being written
                continue
    return lines


def test_the_request_id_reaches_the_worker_log(asgi_server, worker):
    acme = Organization.objects.create(name="Acme", slug="acme")
    user = make_user("wanda")
    Membership.objects.create(user=user, organization=acme, role=Role.OPERATOR)
    token = token_issue(user=user, name="logs")[1]

    conn = http.client.HTTPConnection("127.0.0.1", asgi_server, timeout=30)
    conn.request(
        "POST",
        "/api/v1/jobs/",
        json.dumps({"job_type": "test-logging"}),
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Request-ID": "req-worker-1",
        },
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 201, body
    assert response.getheader("X-Request-ID") == "req-worker-1"
    assert Job.objects.get(pk=body["id"]).request_id == "req-worker-1"

    def finished() -> list[dict]:
        ours = [line for line in worker_lines(worker) if line.get("job_id") == body["id"]]
        return ours if any(line["message"] == "job succeeded" for line in ours) else []

    lines = wait_for(finished, message="the worker to log the job's end")
    assert {line.get("request_id") for line in lines} == {"req-worker-1"}
    assert [line["step_key"] for line in lines if "step_key" in line] == ["fetch", "write"]
    assert all(line["timestamp"] and line["level"] and line["logger"] for line in lines)

    # The async SSE view answers through the same middleware under ASGI. (An unknown
    # job: a real stream lingers after the client hangs up, holding up uvicorn's exit.)
    conn.request(
        "GET",
        "/api/v1/jobs/00000000-0000-0000-0000-000000000000/stream/",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-sse-1"},
    )
    stream = conn.getresponse()
    stream.read()
    conn.close()
    assert (stream.status, stream.getheader("X-Request-ID")) == (404, "req-sse-1")
