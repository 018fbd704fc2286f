"""The same runtime over RabbitMQ: a priority queue (x-max-priority), the
inverted priority mapping, and a pause/approve/resume through a real worker.

The test process's Celery app speaks Redis, so everything that publishes here
(enqueue, approve) runs as the command line would, in a process set up for
RabbitMQ.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from checkpoints.models import Checkpoint
from jobs.models import Job, JobStatus
from jobs.processes import WorkerProcess
from tests.conftest import QUEUE, RUNTIME_ENV, database_url
from tests.factories import make_user
from tests.utils import wait_status

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
AMQP_QUEUE = f"{QUEUE}-amqp"


def amqp_env() -> dict[str, str]:
    return {
        **os.environ,
        **RUNTIME_ENV,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": AMQP_URL,
        "COUNTERSIGN_QUEUE": AMQP_QUEUE,
    }


def manage(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=amqp_env(),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def amqp_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("amqp-worker")
    worker = WorkerProcess(
        log_path=tmp / "worker.log",
        env=amqp_env(),
        queues=[AMQP_QUEUE],
        hostname=f"amqp-{QUEUE}@%h",
    )
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        from kombu import Connection

        with Connection(AMQP_URL) as conn:
            conn.default_channel.queue_delete(AMQP_QUEUE)


def test_pause_approve_resume_over_rabbitmq(amqp_worker, transactional_db):
    make_user("alice", approver=True)

    created = json.loads(
        manage(
            "enqueue",
            "code-generation",
            "--priority",
            "9",
            "--input",
            '{"prompt": "over rabbit"}',
            "--json",
        )
    )
    wait_status(created["id"], JobStatus.WAITING)
    checkpoint = Checkpoint.objects.get(job_id=created["id"])
    manage("checkpoints", "approve", str(checkpoint.pk), "--as", "alice")

    wait_status(created["id"], JobStatus.SUCCEEDED)
    workspace = Path(Job.objects.get(pk=created["id"]).result["workspace"])
    assert (workspace / "over_rabbit.py").exists()


def test_the_job_queue_is_a_priority_queue(amqp_worker):
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "arguments", "--formatter", "json", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # arguments are listed as [name, type, value] triples
    queues = {
        q["name"]: {arg[0]: arg[-1] for arg in q["arguments"]} for q in json.loads(listed.stdout)
    }
    assert queues[AMQP_QUEUE]["x-max-priority"] == 9
