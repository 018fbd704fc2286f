"""The admin review page: what a reviewer sees, and deciding from it."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import Membership, Organization, Role
from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def staff(username: str, organization: Organization, role: Role) -> Client:
    """A staff member whose admin permissions come from the role alone."""
    user = make_user(username)
    user.is_staff = True
    user.save()
    Membership.objects.create(user=user, organization=organization, role=role)
    client = Client()
    client.force_login(user)
    return client


def paused(organization: Organization, **input: object) -> Checkpoint:
    creator = User.objects.get_or_create(username="creator")[0]
    job = job_create(
        job_type="code-generation",
        organization=organization,
        input=input or {"prompt": "hello world"},
        created_by=creator,
    )
    assert run_job(str(job.pk)) == JobStatus.WAITING
    return Checkpoint.objects.get(job=job)


def review_url(checkpoint: Checkpoint) -> str:
    return f"/admin/checkpoints/checkpoint/{checkpoint.pk}/change/"


def decide(client: Client, checkpoint: Checkpoint, **form: str):
    return client.post(f"/admin/checkpoints/checkpoint/{checkpoint.pk}/decide/", form, follow=True)


def test_the_review_page_shows_files_as_diffs(acme):
    approver = staff("april", acme, Role.APPROVER)
    checkpoint = paused(acme)

    page = approver.get(review_url(checkpoint)).content.decode()

    assert "Write 2 file(s)" in page and "hello_world.py" in page
    assert '<div class="add">+def hello_world() -&gt; str:</div>' in page
    assert '<div class="meta">--- /dev/null</div>' in page
    assert 'value="Approve"' in page and 'value="Reject"' in page


def test_approve_and_approve_with_edits_from_the_review_page(acme):
    approver = staff("april", acme, Role.APPROVER)
    first, second = paused(acme), paused(acme)

    decide(approver, first, verdict="approve", reason="fine")
    bad = decide(approver, second, verdict="approve_with_edits", payload="{not json")
    assert "not valid JSON" in bad.content.decode()
    decide(
        approver,
        second,
        verdict="approve_with_edits",
        payload='{"files": [{"path": "edited.py", "content": "x = 1\\n"}]}',
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == CheckpointStatus.APPROVED
    assert second.decisions.get().payload == {
        "files": [{"path": "edited.py", "content": "x = 1\n"}]
    }
    assert run_job(str(second.job_id)) == JobStatus.SUCCEEDED


def test_reject_needs_a_reason(acme):
    approver = staff("april", acme, Role.APPROVER)
    checkpoint = paused(acme)
    assert "needs a reason" in decide(approver, checkpoint, verdict="reject").content.decode()
    decide(approver, checkpoint, verdict="reject", reason="wrong files")
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.REJECTED


def test_a_viewer_sees_but_cannot_decide(acme):
    viewer = staff("vic", acme, Role.VIEWER)
    checkpoint = paused(acme)

    page = viewer.get(review_url(checkpoint)).content.decode()
    assert "may view this checkpoint but not decide" in page and 'value="Approve"' not in page
    decide(viewer, checkpoint, verdict="approve")
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.PENDING


def test_another_organizations_checkpoints_are_invisible(acme):
    globex = Organization.objects.create(name="Globex", slug="globex")
    outsider = staff("gus", globex, Role.ADMIN)
    checkpoint = paused(acme)
    assert outsider.get(review_url(checkpoint)).status_code == 404
    assert decide(outsider, checkpoint, verdict="approve").status_code == 404
    listing = outsider.get("/admin/checkpoints/checkpoint/").content.decode()
    assert checkpoint.title not in listing


def test_bulk_approve_asks_for_confirmation(acme):
    approver = staff("april", acme, Role.APPROVER)
    checkpoints = [paused(acme) for _ in range(2)]
    form = {"action": "approve_selected", "_selected_action": [str(c.pk) for c in checkpoints]}

    confirm = approver.post("/admin/checkpoints/checkpoint/", form)
    assert "Yes, approve" in confirm.content.decode()
    assert Checkpoint.objects.filter(status=CheckpointStatus.PENDING).count() == 2
    approver.post("/admin/checkpoints/checkpoint/", {**form, "confirm": "yes"})
    assert Checkpoint.objects.filter(status=CheckpointStatus.APPROVED).count() == 2


def test_the_admin_index_shows_the_pending_count(acme):
    approver = staff("april", acme, Role.APPROVER)
    paused(acme)
    paused(acme)
    assert "<strong>2</strong> checkpoint(s) waiting" in approver.get("/admin/").content.decode()


def test_the_job_creator_is_told_why_there_is_no_approve_button(acme):
    creator = staff("creator", acme, Role.APPROVER)  # an approver, but they started the job
    checkpoint = paused(acme)

    page = creator.get(review_url(checkpoint)).content.decode()

    assert 'value="Approve"' not in page and 'value="Reject"' in page
    assert "You cannot approve this checkpoint" in page
    assert "four-eyes rule" in page


def test_the_front_page_leads_to_the_admin():
    response = Client().get("/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")
