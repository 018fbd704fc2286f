"""The API tests' clients (an operator and an approver of `acme`), and a real uvicorn
process serving the project (ASGI) for the tests that need one."""

import http.client
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from jobs.processes import WorkerProcess, poll_until
from tests.conftest import RUNTIME_ENV, database_url
from tests.factories import client_for


@pytest.fixture
def operator(acme: Organization) -> APIClient:
    return client_for("oscar", acme, Role.OPERATOR)


@pytest.fixture
def approver(acme: Organization) -> APIClient:
    return client_for("april", acme, Role.APPROVER)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def asgi_server(
    celery_worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    env = {**os.environ, **RUNTIME_ENV, "DATABASE_URL": database_url()}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until(
            lambda: _status(port, "/healthz") == 200,
            timeout=30,
            what=f"uvicorn to answer ({Path(log).read_text()[-500:]})",
        )
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def _status(port: int, path: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
