"""Shared fixtures: fast runtime timings, and a real Celery worker process
(with embedded beat) talking to the real test database and Redis."""

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings

from jobs.processes import WorkerProcess
from tests.llm_server import LLMServer

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from accounts.models import Organization

QUEUE = f"countersign-test-{uuid.uuid4().hex[:8]}"
WORKSPACE_ROOT = Path(f"/tmp/countersign-test-workspaces-{QUEUE}")

# Short leases and intervals so crash recovery and timers happen in seconds.
RUNTIME_ENV = {
    "COUNTERSIGN_QUEUE": QUEUE,
    "COUNTERSIGN_METRICS_PREFIX": f"countersign-test:{QUEUE}:metrics",
    "COUNTERSIGN_HANDLER_MODULES": "tests.handlers",
    "COUNTERSIGN_LEASE_SECONDS": "3",
    "COUNTERSIGN_HEARTBEAT_SECONDS": "0.5",
    "COUNTERSIGN_RECONCILE_INTERVAL": "0.5",
    "COUNTERSIGN_RECONCILE_GRACE_SECONDS": "1.5",
    "COUNTERSIGN_RECONCILE_IDLE_GRACE_SECONDS": "1.0",
    "COUNTERSIGN_EXPIRE_INTERVAL": "0.5",
    "COUNTERSIGN_SCHEDULE_INTERVAL": "0.5",
    "COUNTERSIGN_RETRY_BACKOFF_SECONDS": "0.2",
    "COUNTERSIGN_WORKSPACE_ROOT": str(WORKSPACE_ROOT),
    "COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS": "0.2",
    "COUNTERSIGN_PUBLIC_URL": "http://countersign.test",
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
    "EMAIL_FILE_PATH": f"/tmp/countersign-test-mail-{QUEUE}",
    # As in production, so tests read the worker's log lines as JSON
    # (tests/api/test_request_ids_worker.py).
    "LOG_FORMAT": "json",
}


def pytest_configure(config: pytest.Config) -> None:
    import tests.handlers  # noqa: F401  (register test job types in this process too)
    from config.celery import app

    settings.CELERY_TASK_DEFAULT_QUEUE = QUEUE
    settings.COUNTERSIGN_METRICS_PREFIX = RUNTIME_ENV["COUNTERSIGN_METRICS_PREFIX"]
    app.conf.task_default_queue = QUEUE
    settings.COUNTERSIGN_LEASE_SECONDS = 3.0
    settings.COUNTERSIGN_HEARTBEAT_SECONDS = 0.5
    settings.COUNTERSIGN_RECONCILE_GRACE_SECONDS = 1.5
    settings.COUNTERSIGN_RETRY_BACKOFF_SECONDS = 0.2
    settings.COUNTERSIGN_WORKSPACE_ROOT = WORKSPACE_ROOT
    _flush_again_after_a_deadlock()


def _flush_again_after_a_deadlock() -> None:
    """A transactional test's data is flushed (one TRUNCATE of every table) while the
    session worker may still be writing one of its jobs; PostgreSQL then ends one of
    the two as a deadlock. When the flush is the one ended, it is tried again: the
    worker's write has gone through or been ended meanwhile."""
    from django.db import OperationalError
    from django.db.backends.base.operations import BaseDatabaseOperations

    flush = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: Iterable[str]) -> None:
        sql_list = list(sql_list)  # all of it again on each attempt
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            try:
                return flush(self, sql_list)
            except OperationalError as exc:
                deadlock = getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_DETECTED
                if not deadlock or attempt == FLUSH_ATTEMPTS:
                    raise

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]


FLUSH_ATTEMPTS = 5
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


WORKER_FIXTURES = {"celery_worker", "worker", "more_slots", "amqp_worker"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that starts or uses a real worker, so `-m "not worker"` skips them
    on purpose (the fast loop) and CI runs them all."""
    for item in items:
        if WORKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.worker)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start mypy at once if the suite runs it; its test collects the result."""
    from tests import test_code_quality

    if any(item.nodeid.endswith("test_code_quality[mypy]") for item in session.items):
        test_code_quality.start("mypy")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import test_code_quality

    test_code_quality.stop_started()


@pytest.fixture(scope="session")
def django_db_modify_db_settings() -> None:
    """One test database per checkout and DATABASE_URL, so a CI clone and a working
    tree (or two sessions) running the suite at once never drop each other's database."""
    where = f"{settings.BASE_DIR}:{settings.DATABASES['default']['NAME']}"
    digest = hashlib.sha1(where.encode()).hexdigest()[:10]
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_countersign_{digest}"


def database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def purge_queue() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[LLMServer]:
    """A local server speaking the OpenAI and Anthropic wire protocols, for the session:
    the worker's providers talk to it (see celery_worker)."""
    with LLMServer() as server:
        yield server


@pytest.fixture
def llm_server(llm_server_session: LLMServer) -> Iterator[LLMServer]:
    """The session's LLM server with no scripted replies and no recorded requests."""
    llm_server_session.reset()
    yield llm_server_session
    llm_server_session.reset()


LLM_KEYS = {"OPENAI_API_KEY": "sk-test-openai-key", "ANTHROPIC_API_KEY": "test-anthropic-key"}


def llm_env(server: LLMServer) -> dict[str, str]:
    return {
        **LLM_KEYS,
        "OPENAI_BASE_URL": server.openai_base_url,
        "ANTHROPIC_BASE_URL": server.anthropic_base_url,
    }


def worker_env(server: LLMServer) -> dict[str, str]:
    return dict(os.environ, **RUNTIME_ENV, **llm_env(server), DATABASE_URL=database_url())


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, llm_server_session: LLMServer
) -> Iterator[WorkerProcess]:
    """One real worker (one pool slot, embedded beat) for the session, whose OpenAI
    and Anthropic providers reach the local LLM server."""
    tmp = tmp_path_factory.mktemp("worker")
    worker = WorkerProcess(
        log_path=tmp / "worker.log",
        env=worker_env(llm_server_session),
        queues=[QUEUE],
        hostname=f"test-{QUEUE}@%h",
        beat=True,
        schedule_file=str(tmp / "beat-schedule"),
    )
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        with contextlib.suppress(Exception):  # the broker may be what a test stopped
            purge_queue()
        with contextlib.suppress(Exception):  # this session's metrics keys
            from core.metrics.recorder import forget_all

            forget_all()


@pytest.fixture
def more_slots(
    worker: WorkerProcess, tmp_path: Path, llm_server_session: LLMServer
) -> Iterator[WorkerProcess]:
    """A second worker with three pool slots on the session's queue, for the test."""
    extra = WorkerProcess(
        log_path=tmp_path / "extra-worker.log",
        env=worker_env(llm_server_session),
        queues=[QUEUE],
        hostname=f"extra-{QUEUE}@%h",
        concurrency=3,
    )
    try:
        extra.wait_ready()
        yield extra
    finally:
        extra.stop()


@pytest.fixture
def worker(celery_worker: WorkerProcess, transactional_db: None) -> Iterator[WorkerProcess]:
    """The session worker, with committed (transactional) data it can see."""
    yield celery_worker


@pytest.fixture
def local_runtime(settings: Any, tmp_path: Path) -> None:
    """For jobs run in this process (`engine.run_job` called by the test): workspaces
    under the test's folder, and no lease heartbeat, whose own connection could not
    see the test's uncommitted rows."""
    settings.COUNTERSIGN_WORKSPACE_ROOT = tmp_path
    settings.COUNTERSIGN_HEARTBEAT_SECONDS = 600.0


@pytest.fixture
def acme() -> "Organization":
    from accounts.models import Organization

    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def reviewer(acme: "Organization") -> "User":
    """An approver of `acme`."""
    from django.contrib.auth.models import User

    from accounts.models import Membership, Role

    user = User.objects.create_user("april")
    Membership.objects.create(user=user, organization=acme, role=Role.APPROVER)
    return user


@pytest.fixture
def side_effects(tmp_path: Path) -> Path:
    return tmp_path / "side-effects.log"


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
