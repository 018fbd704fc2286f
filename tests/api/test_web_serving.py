"""The web process as production runs it (jobs.processes.web_argv, config.asgi): API
requests on a few threads, each borrowing a pooled PostgreSQL connection and giving it
back. Its connections are told apart by their application_name (libpq's PGAPPNAME)."""

import http.client
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Organization, Role
from accounts.services import token_issue
from jobs.processes import poll_until, web_argv
from tests.api.conftest import _status, free_port
from tests.conftest import RUNTIME_ENV, database_url
from tests.factories import make_user

THREADS = 2
APP_NAME = f"countersign-web-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def web(transactional_db: None, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        **RUNTIME_ENV,
        "DATABASE_URL": database_url(),
        "WEB_THREADS": str(THREADS),
        "PGAPPNAME": APP_NAME,
    }
    log = tmp_path / "web.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            web_argv(port=port, log_level="warning"),
            env=env,
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll_until(
            lambda: _status(port, "/healthz") == 200,
            timeout=30,
            what=f"the web process to answer ({log.read_text()[-500:]})",
        )
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def token() -> str:
    acme = Organization.objects.create(name="Acme", slug="acme")
    user = make_user("vic")
    acme.memberships.create(user=user, role=Role.OPERATOR)
    return token_issue(user=user, name="web")[1]


def get(port: int, path: str, raw_token: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {raw_token}"})
        response = conn.getresponse()
        json.loads(response.read())
        return response.status
    finally:
        conn.close()


def backends() -> dict[int, str]:
    """The web process's connections to the test database: pid -> state."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [APP_NAME],
        )
        return dict(cursor.fetchall())


def test_requests_borrow_pooled_connections_and_give_them_back(web):
    raw = token()
    for _ in range(5):
        assert get(web, "/api/v1/jobs/", raw) == 200
    # the pool's two standing connections (and one more if a first request had to wait
    # for them, opened in the background); requests one at a time need no more
    seen: list[dict[int, str]] = []

    def settled() -> dict[int, str] | None:
        """At least two, all idle, and the same as at the look before: none is being
        opened any more."""
        now = backends()
        stable = bool(seen) and now == seen[-1]
        seen.append(now)
        return now if stable and len(now) >= 2 and set(now.values()) == {"idle"} else None

    before = poll_until(settled, timeout=10, interval=0.2, what="the pool's connections to settle")

    for _ in range(20):
        assert get(web, "/api/v1/jobs/", raw) == 200
    after = backends()

    # the same connections, lent again: none opened (or left open) per request
    assert after.keys() == before.keys()
    # and given back between requests: idle, no transaction left open
    assert set(after.values()) == {"idle"}


def test_more_requests_at_once_than_threads_share_a_bounded_pool(web):
    raw = token()
    with ThreadPoolExecutor(16) as clients:
        statuses = list(clients.map(lambda _: get(web, "/api/v1/jobs/", raw), range(48)))

    assert statuses == [200] * 48
    # one connection per busy thread, the pool's two standing ones at least
    assert 2 <= len(backends()) <= THREADS + 4
    assert set(backends().values()) == {"idle"}
