"""/api/v1/workers/ against the real test worker: status, pause, resume."""

from rest_framework.test import APIClient

from accounts.models import Membership, Organization, Role
from jobs.models import JobStatus
from jobs.runtime.reconciler import broker_backlog
from jobs.services import job_create
from tests.conftest import QUEUE
from tests.factories import make_user
from tests.utils import wait_for, wait_status


def client_as(
    username: str, organization: Organization, role: Role, superuser: bool = False
) -> APIClient:
    user = make_user(username)
    if superuser:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
    Membership.objects.create(user=user, organization=organization, role=role)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_workers_status_pause_and_resume(worker):
    acme = Organization.objects.create(name="Acme", slug="acme")
    admin = client_as("ada", acme, Role.ADMIN, superuser=True)
    viewer = client_as("vic", acme, Role.VIEWER)
    tenant_admin = client_as("tom", acme, Role.ADMIN)  # one organization's admin

    listed = viewer.get("/api/v1/workers/").json()
    ours = next(w for w in listed if w["name"].startswith(f"test-{QUEUE}@"))
    assert ours["consuming"] and ours["concurrency"] == 1 and QUEUE in ours["queues"]
    url = f"/api/v1/workers/{ours['name']}/"
    assert viewer.post(url + "stop/").status_code == 403
    # the workers serve every organization: not one organization's admin to stop
    assert tenant_admin.post(url + "stop/").status_code == 403
    assert admin.post("/api/v1/workers/nobody@nowhere/stop/").status_code == 404

    stopped = admin.post(url + "stop/")
    try:
        assert stopped.status_code == 200 and stopped.json()["consuming"] is False
        job = job_create(job_type="simple-task")
        # the message waits on the broker while the job stays queued
        wait_for(lambda: (broker_backlog() or 0) >= 1, message="a message waiting in the queue")
        assert wait_status(job.pk, JobStatus.QUEUED)
    finally:
        started = admin.post(url + "start/")
    assert started.json()["consuming"] is True
    wait_status(job.pk, JobStatus.SUCCEEDED)


def test_superusers_grow_and_shrink_a_worker_pool(worker):
    acme = Organization.objects.create(name="Acme", slug="acme")
    admin = client_as("ada", acme, Role.ADMIN, superuser=True)
    operator = client_as("oscar", acme, Role.OPERATOR)
    tenant_admin = client_as("tom", acme, Role.ADMIN)
    name = next(
        w["name"]
        for w in admin.get("/api/v1/workers/").json()
        if w["name"].startswith(f"test-{QUEUE}@")
    )
    url = f"/api/v1/workers/{name}/"

    for action in ("grow", "shrink"):
        assert operator.post(url + f"{action}/", {"n": 1}, format="json").status_code == 403
        assert tenant_admin.post(url + f"{action}/", {"n": 1}, format="json").status_code == 403
        for bad in ({"n": 0}, {"n": -1}, {"n": "two"}, {}, {"n": 33}):
            response = admin.post(url + f"{action}/", bad, format="json")
            assert response.status_code == 400, (action, bad)
            assert "n" in response.json()["error"]["fields"]
        missing = admin.post(f"/api/v1/workers/nobody@nowhere/{action}/", {"n": 1}, format="json")
        assert missing.status_code == 404
    # one process: shrinking it away is refused
    refused = admin.post(url + "shrink/", {"n": 1}, format="json")
    assert refused.status_code == 400 and "would leave none" in str(refused.json())
    assert admin.get(url).json()["concurrency"] == 1

    try:
        grown = admin.post(url + "grow/", {"n": 1}, format="json")
        assert grown.status_code == 200 and grown.json()["name"] == name
        wait_for(lambda: admin.get(url).json()["concurrency"] == 2, message="a pool of 2")
    finally:
        # other tests share this worker: back to one process (retry while all are busy)
        wait_for(
            lambda: (
                admin.get(url).json()["concurrency"] == 1
                or admin.post(url + "shrink/", {"n": 1}, format="json").status_code == 200
            ),
            message="the pool to shrink",
        )
    wait_for(lambda: admin.get(url).json()["concurrency"] == 1, message="a pool of 1")


def test_running_jobs_are_shown_only_to_their_organization(worker, tmp_path):
    acme = Organization.objects.create(name="Acme", slug="acme")
    globex = Organization.objects.create(name="Globex", slug="globex")
    release = tmp_path / "release"
    job = job_create(
        job_type="test-counting",
        input={"log": str(tmp_path / "log"), "release": str(release)},
        organization=globex,
    )
    try:
        wait_status(job.pk, JobStatus.RUNNING)

        def running_seen_by(client: APIClient) -> tuple[int, list[str]]:
            listed = client.get("/api/v1/workers/").json()
            ours = next(w for w in listed if w["name"].startswith(f"test-{QUEUE}@"))
            return ours["active"], ours["active_jobs"]

        theirs = client_as("gil", globex, Role.VIEWER)
        wait_for(lambda: running_seen_by(theirs)[1] == [str(job.pk)], message="the job listed")
        assert running_seen_by(client_as("vic", acme, Role.VIEWER)) == (1, [])
        root = client_as("root", acme, Role.ADMIN, superuser=True)
        assert running_seen_by(root)[1] == [str(job.pk)]
    finally:
        release.touch()
    wait_status(job.pk, JobStatus.SUCCEEDED)
