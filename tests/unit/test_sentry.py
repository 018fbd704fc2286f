"""Sentry reporting, checked at the wire: a local HTTP server stands in for Sentry's
ingest, the SDK's real transport posts envelopes to it, and the tests read what
arrived (the raw bytes too, to be sure that no secret and no payload is in them)."""

import gzip
import json
import os
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk

from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointStatus
from checkpoints.waiter import Decision
from core.sentry import FILTERED, init_sentry, redacted_repr, scrub_event, scrub_text
from jobs.models import JobStatus
from jobs.runtime import JobContext, NonRetryableError, RetryPolicy, handler
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

try:
    import brotli
except ImportError:  # not installed: the SDK then compresses with gzip
    brotli = None

FAKE_KEY = "sk-test-SECRET123"
ENV_KEY = "plain-anthropic-value-7781"  # no recognisable shape: only the env lookup finds it
PAYLOAD_TEXT = "contents of a private file 5f1e"


@handler("sentry-test-fails")
def fails(ctx: JobContext) -> None:
    payload = ctx.input["payload"]
    note = f"called the provider with {FAKE_KEY} and {os.environ['ANTHROPIC_API_KEY']}"
    raise NonRetryableError(f"provider refused ({len(payload)} fields): {note}")


@handler("sentry-test-flaky", retry=RetryPolicy(max_attempts=3, backoff=0.1, jitter=False))
def flaky(ctx: JobContext) -> None:
    raise ConnectionError("provider unreachable, will retry")


@handler("sentry-test-review")
def review(ctx: JobContext) -> None:
    decision = ctx.checkpoint(
        "review", title="Review the file", payload={"content": ctx.input["text"]}
    )
    raise NonRetryableError(f"could not apply the reviewed file ({decision.status})")


# --- the stand-in for Sentry ---------------------------------------------------------------
class Ingest:
    """Accepts envelopes (and legacy store requests) for project 1 and keeps them."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.items: list[tuple[dict[str, Any], Any]] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br" and brotli is not None:  # the SDK's choice if installed
                    body = brotli.decompress(body)
                elif encoding not in ("", "identity"):
                    ingest.rejected.append(f"encoding {encoding}")
                    self.send_response(415)
                    self.end_headers()
                    return
                if self.path == "/api/1/envelope/":
                    ingest.add(body, parse_envelope(body))
                elif self.path == "/api/1/store/":
                    ingest.add(body, [({"type": "event"}, json.loads(body))])
                else:
                    ingest.rejected.append(self.path)
                    self.send_response(404)
                    self.end_headers()
                    return
                reply = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def add(self, body: bytes, items: list[tuple[dict[str, Any], Any]]) -> None:
        with self._lock:
            self.bodies.append(body)
            self.items.extend(items)

    def of_type(self, kind: str) -> list[Any]:
        with self._lock:
            return [payload for header, payload in self.items if header.get("type") == kind]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.of_type("event")

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return self.of_type("transaction")

    @property
    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.bodies)

    def __enter__(self) -> "Ingest":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Sentry's envelope: a header line, then per item a header line and a payload
    (`length` bytes if the header says, else up to the next newline)."""
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        try:
            items.append((header, json.loads(payload)))
        except ValueError:
            items.append((header, payload))
    return items


def disable_sentry() -> None:
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


@pytest.fixture
def sentry_off() -> Iterator[None]:
    yield
    disable_sentry()


@pytest.fixture
def ingest(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Any) -> Iterator[Ingest]:
    """Sentry on, through init_sentry, reporting to a local Ingest; off again after."""
    settings.COUNTERSIGN_WORKSPACE_ROOT = tmp_path
    settings.COUNTERSIGN_HEARTBEAT_SECONDS = 600.0
    monkeypatch.setenv("ANTHROPIC_API_KEY", ENV_KEY)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "test")
    with Ingest() as server:
        monkeypatch.setenv("SENTRY_DSN", server.dsn)
        assert init_sentry(debug=True)
        sentry_sdk.get_isolation_scope().clear_breadcrumbs()  # none from earlier tests
        try:
            yield server
        finally:
            disable_sentry()
            sentry_sdk.get_isolation_scope().clear_breadcrumbs()
    assert not server.rejected


def delivered(ingest: Ingest) -> Ingest:
    assert sentry_sdk.flush(timeout=10) is None
    return ingest


# --- configuration ---------------------------------------------------------------------------
def test_without_a_dsn_nothing_starts(monkeypatch, sentry_off):
    monkeypatch.setenv("SENTRY_DSN", "")
    assert init_sentry(debug=False) is False
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize(
    ("debug", "environment", "expected"),
    [(True, None, "development"), (False, None, "production"), (False, "staging", "staging")],
)
def test_the_environment_follows_debug_unless_set(
    monkeypatch, sentry_off, debug, environment, expected
):
    monkeypatch.setenv("SENTRY_DSN", "http://public@127.0.0.1:9/1")
    if environment is None:
        monkeypatch.delenv("SENTRY_ENVIRONMENT", raising=False)
    else:
        monkeypatch.setenv("SENTRY_ENVIRONMENT", environment)
    monkeypatch.setenv("SENTRY_RELEASE", "countersign@1.2.3")
    assert init_sentry(debug=debug)
    options = sentry_sdk.get_client().options
    assert (options["environment"], options["release"]) == (expected, "countersign@1.2.3")
    assert sentry_sdk.get_client().should_send_default_pii() is False
    assert {"django", "celery"} <= set(sentry_sdk.get_client().integrations)


def test_job_runs_are_sampled_apart_from_requests(monkeypatch, sentry_off):
    monkeypatch.setenv("SENTRY_DSN", "http://public@127.0.0.1:9/1")
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
    monkeypatch.delenv("SENTRY_JOB_TRACES_SAMPLE_RATE", raising=False)
    init_sentry()
    sample = sentry_sdk.get_client().options["traces_sampler"]
    assert sample({"celery_job": {"task": "agents.run_job"}, "parent_sampled": False}) == 1.0
    assert sample({"transaction_context": {"op": "job.run"}, "parent_sampled": None}) == 1.0
    assert sample({"celery_job": {"task": "agents.reconcile"}, "parent_sampled": None}) == 0.25
    assert sample({"transaction_context": {"op": "http.server"}, "parent_sampled": True}) == 1.0


# --- the scrubber ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"refused {FAKE_KEY}", f"refused {FILTERED}"),
        ("key sk-ant-api03-AbCdEf012345_xyz in use", f"key {FILTERED} in use"),
        ("groq gsk_abcdefghijklmnop1234", f"groq {FILTERED}"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", f"Authorization: Bearer {FILTERED}"),
        ("token cs_Zx9fJ2kLmN0pQ4rS8tU1vW3y", f"token {FILTERED}"),
        ("postgres://app:hunter2hunter@db:5432/app", f"postgres://app:{FILTERED}@db:5432/app"),
        ("redis://:hunter2hunter@redis:6379/0", f"redis://:{FILTERED}@redis:6379/0"),
        ("GET /v1/models?api_key=abc123&page=2", f"GET /v1/models?api_key={FILTERED}&page=2"),
        ("Config(api_key='xyz987', model='gpt')", f"Config(api_key='{FILTERED}', model='gpt')"),
        ("{'secret': 'xyz', 'n': 1}", f"{{'secret': '{FILTERED}', 'n': 1}}"),
        (f"env value {ENV_KEY}!", f"env value {FILTERED}!"),
        (
            "nothing to hide: 3 steps, job 42, max_tokens=20",
            "nothing to hide: 3 steps, job 42, max_tokens=20",
        ),
    ],
)
def test_secrets_in_text_are_replaced(monkeypatch, text, expected):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ENV_KEY)
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to hunt for: ordinary words survive
    from core.sentry import secret_values

    assert scrub_text(text, secret_values()) == expected


def test_a_whole_event_is_scrubbed(monkeypatch):
    # given an event with secrets and payloads in every place the SDK puts data
    monkeypatch.setenv("OPENAI_API_KEY", "openai-value-from-env-0042")
    event = {
        "message": "failed calling openai-value-from-env-0042",
        "exception": {
            "values": [
                {
                    "type": "RuntimeError",
                    "value": f"refused {FAKE_KEY}",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "run",
                                "vars": {
                                    "api_key": "whatever-it-is",
                                    "payload": {"file": PAYLOAD_TEXT},
                                    "steps": {"input": {"q": PAYLOAD_TEXT}, "n": 3},
                                    "decision": f"Decision(content='{PAYLOAD_TEXT}')",
                                    "count": 3,
                                },
                            }
                        ]
                    },
                }
            ]
        },
        "extra": {
            "OPENAI_API_KEY": "openai-value-from-env-0042",
            "webhook_secret": "w",
            "job_id": "j-1",
        },
        "contexts": {"tool": {"arguments": {"path": PAYLOAD_TEXT}, "name": "read_file"}},
        "request": {
            "url": "https://x.test/api/jobs/",
            "method": "POST",
            "headers": {
                "Authorization": "Token cs_abc",
                "Cookie": "sessionid=s",
                "X-Api-Key": "k",
                "Content-Type": "application/json",
            },
            "data": {"input": {"text": PAYLOAD_TEXT}, "job_type": "code-generation"},
            "query_string": "token=abc&page=2",
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "checkpoint",
                    "message": "approved",
                    "data": {"checkpoint_id": 7, "result": PAYLOAD_TEXT},
                }
            ]
        },
        "tags": {"job_id": "j-1", "job_type": "code-generation"},
    }

    # when
    scrubbed = scrub_event(event)

    # then nothing secret is left, and what helps debugging is
    text = json.dumps(scrubbed)
    for secret in (
        "openai-value-from-env-0042",
        FAKE_KEY,
        PAYLOAD_TEXT,
        "whatever-it-is",
        "cs_abc",
        "sessionid=s",
        '"w"',
        "token=abc",
    ):
        assert secret not in text
    frame = scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"]
    assert frame["payload"] == frame["api_key"] == FILTERED
    assert frame["steps"] == {"input": FILTERED, "n": 3} and frame["count"] == 3
    assert scrubbed["request"]["headers"]["Content-Type"] == "application/json"
    assert scrubbed["request"]["data"] == FILTERED  # bodies are what people typed
    assert scrubbed["request"]["query_string"] == f"token={FILTERED}&page=2"
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"checkpoint_id": 7, "result": FILTERED}
    assert scrubbed["contexts"]["tool"] == {"arguments": FILTERED, "name": "read_file"}
    assert scrubbed["extra"]["job_id"] == "j-1" and scrubbed["tags"] == event["tags"]
    assert scrubbed["exception"]["values"][0]["value"] == f"refused {FILTERED}"


def test_a_raw_request_body_is_dropped():
    event = {"request": {"data": f'{{"input": "{PAYLOAD_TEXT}"}}'}}
    assert scrub_event(event)["request"]["data"] == FILTERED


def test_decisions_in_stack_frames_show_no_payload():
    decision = Decision(
        checkpoint_id=3,
        status="approved",
        payload={"content": PAYLOAD_TEXT},
        data={"branch": PAYLOAD_TEXT},
        decided_by=["alice"],
    )
    shown = redacted_repr(decision)
    assert shown is not None and PAYLOAD_TEXT not in shown
    assert "checkpoint_id=3" in shown and "decided_by=['alice']" in shown
    assert redacted_repr({"a": 1}) is None  # everything else: the SDK's own repr


# --- through the SDK's transport -------------------------------------------------------------
@pytest.mark.django_db
def test_a_failed_job_is_reported_with_its_tags_and_nothing_secret(ingest):
    # given
    job = job_create(
        job_type="sentry-test-fails", input={"payload": {"file": PAYLOAD_TEXT, "mode": "rw"}}
    )

    # when
    assert run_job(str(job.pk)) == JobStatus.FAILED

    # then one error (the failure log line's own event is dropped as its duplicate)
    delivered(ingest)
    [error] = ingest.errors
    assert error["exception"]["values"][-1]["type"] == "NonRetryableError"
    assert error["environment"] == "test"
    tags = error["tags"]
    assert (tags["job_id"], tags["job_type"], tags["concurrency"], tags["attempt"]) == (
        str(job.pk),
        "sentry-test-fails",
        "none",
        "1",
    )
    assert tags["organization"] == str(job.organization_id)
    # the handler's frame was sent, its secrets and payload were not
    for secret in (FAKE_KEY, ENV_KEY, PAYLOAD_TEXT):
        assert secret.encode() not in ingest.raw
    frames = error["exception"]["values"][-1]["stacktrace"]["frames"]
    handler_vars = next(f["vars"] for f in frames if f["function"] == "fails")
    assert handler_vars["payload"] == FILTERED and FILTERED in handler_vars["note"]
    # and the run was a transaction
    [transaction] = ingest.transactions
    assert transaction["transaction"] == "sentry-test-fails"
    assert transaction["contexts"]["trace"]["op"] == "job.run"
    assert transaction["contexts"]["trace"]["status"] == "internal_error"
    assert transaction["tags"]["job_id"] == str(job.pk)


@pytest.mark.django_db
def test_an_attempt_that_will_be_retried_is_no_error(ingest):
    job = job_create(job_type="sentry-test-flaky")

    assert run_job(str(job.pk)) == JobStatus.RETRYING

    delivered(ingest)
    assert ingest.errors == []
    [transaction] = ingest.transactions
    assert transaction["transaction"] == "sentry-test-flaky"


@pytest.mark.django_db
def test_a_checkpoint_decision_is_a_breadcrumb_on_a_later_event(ingest):
    # given a job waiting at its checkpoint, approved by alice
    job = job_create(job_type="sentry-test-review", input={"text": PAYLOAD_TEXT})
    assert run_job(str(job.pk)) == JobStatus.WAITING
    checkpoint = Checkpoint.objects.get(job=job, status=CheckpointStatus.PENDING)
    alice = make_user("alice", approver=True)
    services.checkpoint_approve(checkpoint=checkpoint, user=alice, reason="looks fine")

    # when the resumed run fails
    assert run_job(str(job.pk)) == JobStatus.FAILED

    # then its error event carries the decision, without the payload
    delivered(ingest)
    [error] = ingest.errors
    crumbs = [c for c in error["breadcrumbs"]["values"] if c.get("category") == "checkpoint"]
    assert [c["data"] for c in crumbs] == [
        {
            "checkpoint_id": checkpoint.pk,
            "job_id": str(job.pk),
            "kind": "approval",
            "decision": "approved",
            "status": "approved",
            "user_id": alice.pk,
        }
    ]
    assert PAYLOAD_TEXT.encode() not in ingest.raw
    assert b"looks fine" not in ingest.raw  # nor the reviewer's reason


@pytest.mark.django_db
def test_under_celery_the_task_transaction_becomes_the_job_run(ingest, monkeypatch):
    from jobs.tasks import run_job as run_job_task

    # The task's connection check would close the test's open transaction.
    monkeypatch.setattr("jobs.tasks.close_old_connections", lambda: None)
    job = job_create(job_type="sentry-test-fails", input={"payload": {"file": PAYLOAD_TEXT}})

    assert run_job_task.apply(args=[str(job.pk)]).get() == JobStatus.FAILED

    delivered(ingest)
    [transaction] = ingest.transactions  # one, not a job.run transaction inside the task's
    assert transaction["transaction"] == "sentry-test-fails"
    assert transaction["contexts"]["trace"]["op"] == "queue.task.celery"
    assert transaction["tags"]["job_id"] == str(job.pk)
    assert [s["description"] for s in transaction["spans"] if s["op"] == "job.run"] == [
        "sentry-test-fails"
    ]
    [error] = ingest.errors
    assert error["tags"]["job_id"] == str(job.pk)
    assert error["contexts"]["trace"]["trace_id"] == transaction["contexts"]["trace"]["trace_id"]
    for secret in (FAKE_KEY, ENV_KEY, PAYLOAD_TEXT):
        assert secret.encode() not in ingest.raw
