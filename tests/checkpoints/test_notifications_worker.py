"""When a checkpoint opens, approvers get an email and the organization's webhook a
signed POST (retried on failure, every attempt recorded). No payload leaves."""

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from accounts.models import Membership, Organization, Role
from checkpoints.models import Checkpoint, WebhookDelivery
from jobs.services import job_create
from tests.conftest import RUNTIME_ENV
from tests.factories import make_user
from tests.utils import wait_for


class Receiver:
    """A local webhook endpoint answering with the given statuses in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver([500])
    yield hook
    hook.server.shutdown()


def test_approvers_and_the_webhook_are_told(worker, receiver):
    acme = Organization.objects.create(name="Acme", slug="acme", webhook_url=receiver.url)
    for name, role in (("april", Role.APPROVER), ("vic", Role.VIEWER)):
        user = make_user(name)
        user.email = f"{name}@acme.test"
        user.save()
        Membership.objects.create(user=user, organization=acme, role=role)

    job = job_create(
        job_type="test-approval",
        organization=acme,
        input={"payload": {"api_key": "sk-secret-value"}},
    )

    wait_for(
        lambda: WebhookDelivery.objects.filter(delivered=True).exists(),
        timeout=30,
        message="a delivered webhook",
    )
    checkpoint = Checkpoint.objects.get(job=job)
    attempts = list(WebhookDelivery.objects.values_list("attempt", "status_code", "delivered"))
    assert attempts == [(1, 500, False), (2, 200, True)]
    headers, body = receiver.received[-1]
    expected = hmac.new(acme.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Countersign-Signature"] == f"sha256={expected}"
    sent = json.loads(body)
    assert sent["event"] == "checkpoint.opened" and sent["checkpoint"]["id"] == checkpoint.pk
    assert sent["review_url"].startswith("http://countersign.test/admin/")
    assert b"sk-secret-value" not in body

    mail_dir = Path(RUNTIME_ENV["EMAIL_FILE_PATH"])
    mail = wait_for(
        lambda: (
            [p.read_text() for p in mail_dir.glob("*.log") if checkpoint.title in p.read_text()]
            if mail_dir.exists()
            else None
        ),
        message="the approvers' email",
    )[-1]
    assert "april@acme.test" in mail and "vic@acme.test" not in mail
    assert "sk-secret-value" not in mail and sent["review_url"] in mail
