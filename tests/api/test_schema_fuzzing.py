"""schemathesis against /api/schema/ on a real uvicorn process: a bounded number of
generated requests per operation; no 5xx, and every response matches the schema."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from accounts.models import Membership, Organization, Role
from accounts.services import token_issue
from jobs.models import JobStatus
from jobs.services import job_create
from tests.factories import make_user
from tests.utils import wait_status
from workflows.events import event_send
from workflows.services import workflow_create, workflow_run_start

EXAMPLES_PER_OPERATION = 5


def test_the_api_keeps_its_schema_under_generated_requests(
    asgi_server, transactional_db, tmp_path: Path
):
    acme = Organization.objects.create(name="Acme", slug="acme")
    admin = make_user("ada")
    Membership.objects.create(user=admin, organization=acme, role=Role.ADMIN)
    token = token_issue(user=admin, name="schemathesis")[1]
    job = job_create(job_type="test-approval", organization=acme)  # something to find
    wait_status(job.pk, JobStatus.WAITING)
    flow = workflow_create(
        organization=acme,
        slug="flow",
        name="Flow",
        definition={
            "triggers": [{"type": "message"}],
            "nodes": [{"id": "ask", "type": "approval", "config": {"title": "ok?"}}],
        },
    )
    wait_status(workflow_run_start(workflow=flow, input={}).job_id, JobStatus.WAITING)
    event_send(organization=acme, name="something", data={"x": 1})

    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"http://127.0.0.1:{asgi_server}/api/schema/",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "1",
            "--phases",
            "examples,fuzzing",
            "--report-dir",
            str(tmp_path / "report"),
            "--no-color",
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
