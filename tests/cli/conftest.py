"""Fixtures for the command-line tests: commands run in-process through
call_command, and jobs run in-process through the engine (no worker needed)."""

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command

from jobs.models import Job
from jobs.runtime.engine import run_job
from tests.factories import make_user


class Cli:
    """Runs a management command; keeps the last stdout/stderr for assertions."""

    def __init__(self) -> None:
        self.out = ""
        self.err = ""

    def __call__(self, *args: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command(*args, stdout=out, stderr=err, no_color=True)
        finally:
            self.out, self.err = out.getvalue(), err.getvalue()
        return self.out

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture(autouse=True)
def local_runtime(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workspaces under tmp_path; no lease heartbeat during an in-process run (its
    thread's own connection could not see this test's uncommitted rows); no
    acting user from the caller's environment; a fast password hasher."""
    settings.COUNTERSIGN_WORKSPACE_ROOT = tmp_path / "workspaces"
    settings.COUNTERSIGN_HEARTBEAT_SECONDS = 600.0
    settings.COUNTERSIGN_LEASE_SECONDS = 600.0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.delenv("COUNTERSIGN_USER", raising=False)
    return tmp_path / "workspaces"


@pytest.fixture
def people() -> SimpleNamespace:
    return SimpleNamespace(
        creator=make_user("creator"),
        alice=make_user("alice", approver=True),
        bob=make_user("bob", approver=True),
        viewer=make_user("viewer"),
    )


@pytest.fixture
def paused_job(cli: Cli, people: SimpleNamespace) -> Job:
    """A code-generation job started by `creator`, paused at its write-files checkpoint."""
    job_id = cli(
        "enqueue", "code-generation", "--input", '{"prompt": "hello world"}', "--as", "creator"
    ).strip()
    assert run_job(job_id) == "waiting"
    return Job.objects.get(pk=job_id)
