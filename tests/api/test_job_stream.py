"""The SSE stream through a real uvicorn process, with the real worker publishing."""

import http.client
from collections.abc import Iterator

from accounts.models import Membership, Organization, Role
from accounts.services import token_issue
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import JobStatus
from jobs.services import job_create
from tests.factories import make_user
from tests.utils import wait_status


def open_stream(
    port: int, job_id: str, token: str, last_event_id: int | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("GET", f"/api/v1/jobs/{job_id}/stream/", headers=headers)
    return conn.getresponse()


def frames(response: http.client.HTTPResponse) -> Iterator[tuple[int, str]]:
    """(id, event) of each frame, until the server closes the stream."""
    seq, kind = None, None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            seq = int(line[4:])
        elif line.startswith("event: "):
            kind = line[7:]
        elif line == "" and seq is not None:
            yield seq, kind or ""
            seq, kind = None, None


def member_token(username: str, organization: Organization, role: Role) -> str:
    user = make_user(username)
    Membership.objects.create(user=user, organization=organization, role=role)
    return token_issue(user=user, name="stream")[1]


def test_a_stream_replays_then_follows_live_until_the_job_ends(asgi_server, transactional_db):
    acme = Organization.objects.create(name="Acme", slug="acme")
    token = member_token("vic", acme, Role.VIEWER)
    approver = make_user("april")
    Membership.objects.create(user=approver, organization=acme, role=Role.APPROVER)
    job = job_create(job_type="test-approval", organization=acme)
    wait_status(job.pk, JobStatus.WAITING)

    stream = frames(open_stream(asgi_server, str(job.pk), token))
    seen = []
    for seq, kind in stream:  # the replay, from the database
        seen.append((seq, kind))
        if kind == "job.waiting":
            break
    services.checkpoint_approve(checkpoint=Checkpoint.objects.get(job=job), user=approver)
    seen += list(stream)  # live, until the server closes it at the end of the job

    kinds = [kind for _, kind in seen]
    assert kinds[:4] == ["job.queued", "job.started", "checkpoint.opened", "job.waiting"]
    assert {"checkpoint.decided", "job.woken", "job.resumed"} <= set(kinds)
    assert kinds[-1] == "job.succeeded"
    assert [seq for seq, _ in seen] == sorted({seq for seq, _ in seen})  # in order, no repeats

    # Reconnecting with Last-Event-ID sends only what came after it, then ends.
    waiting_seq = next(seq for seq, kind in seen if kind == "job.waiting")
    again = list(frames(open_stream(asgi_server, str(job.pk), token, waiting_seq)))
    assert again == [(seq, kind) for seq, kind in seen if seq > waiting_seq]


def test_a_stream_needs_a_member_of_the_jobs_organization(asgi_server, transactional_db):
    acme = Organization.objects.create(name="Acme", slug="acme")
    globex = Organization.objects.create(name="Globex", slug="globex")
    job = job_create(job_type="simple-task", organization=acme)
    conn = http.client.HTTPConnection("127.0.0.1", asgi_server, timeout=10)
    conn.request("GET", f"/api/v1/jobs/{job.pk}/stream/")
    assert conn.getresponse().status == 401
    outsider = member_token("gus", globex, Role.ADMIN)
    assert open_stream(asgi_server, str(job.pk), outsider).status == 404


def test_a_last_event_id_that_is_not_plain_digits_is_a_400(asgi_server, transactional_db):
    acme = Organization.objects.create(name="Acme", slug="acme")
    token = member_token("vic", acme, Role.VIEWER)
    job = job_create(job_type="simple-task", organization=acme)
    for bad in ("²", "99999999999999999999"):  # str.isdigit() takes both; int() one
        conn = http.client.HTTPConnection("127.0.0.1", asgi_server, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": bad}
        conn.request("GET", f"/api/v1/jobs/{job.pk}/stream/", headers=headers)
        response = conn.getresponse()
        assert response.status == 400, (bad, response.status)
        conn.close()
