"""The job admin: scoped to the organization, a readable history, and cancel/retry
allowed by role."""

import pytest

from accounts.models import Organization, Role
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.admin.test_checkpoint_review import paused, staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def job_url(job: Job) -> str:
    return f"/admin/jobs/job/{job.pk}/change/"


def test_the_job_page_shows_steps_an_events_timeline_and_checkpoints(acme):
    viewer = staff("vic", acme, Role.VIEWER)
    checkpoint = paused(acme)

    page = viewer.get(job_url(checkpoint.job)).content.decode()

    assert 'class="cs-timeline"' in page
    for kind in ("job.queued", "job.started", "checkpoint.opened", "job.waiting"):
        assert f"<code>{kind}</code>" in page
    assert ">draft<" in page  # the memoized step
    review = f'/admin/checkpoints/checkpoint/{checkpoint.pk}/change/">{checkpoint.title}</a>'
    assert review in page


def test_the_job_list_has_duration_tokens_and_cost(acme):
    viewer = staff("vic", acme, Role.VIEWER)
    job = job_create(job_type="simple-task", organization=acme)
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    Job.objects.filter(pk=job.pk).update(tokens_in=1200, tokens_out=300)

    page = viewer.get("/admin/jobs/job/").content.decode()

    for header in ("Duration", "Tokens in/out", "Cost (USD)"):
        assert header in page
    assert "1200 / 300" in page and "unknown" in page  # tokens without a price
    assert " ms</td>" in page


def test_another_organizations_jobs_are_invisible(acme):
    outsider = staff("gus", Organization.objects.create(name="Globex", slug="globex"), Role.ADMIN)
    job = job_create(job_type="simple-task", organization=acme)
    assert outsider.get(job_url(job)).status_code == 302  # "does not exist" → admin index
    assert job_url(job) not in outsider.get("/admin/jobs/job/").content.decode()
    outsider.post("/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [str(job.pk)]})
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_operators_cancel_and_viewers_cannot(acme):
    viewer, operator = staff("vic", acme, Role.VIEWER), staff("otto", acme, Role.OPERATOR)
    job = job_create(job_type="simple-task", organization=acme)
    form = {"action": "cancel_jobs", "_selected_action": [str(job.pk)]}

    assert "cancel_jobs" not in viewer.get("/admin/jobs/job/").content.decode()
    viewer.post("/admin/jobs/job/", form)
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED

    assert "cancel_jobs" in operator.get("/admin/jobs/job/").content.decode()
    operator.post("/admin/jobs/job/", form)
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_a_member_without_a_role_for_it_is_kept_out_of_the_pages(acme):
    approver = staff("april", acme, Role.APPROVER)
    assert approver.get("/admin/accounts/membership/").status_code == 200  # listed, read-only
    assert approver.get("/admin/accounts/apitoken/").status_code == 403
    assert approver.get("/admin/accounts/organization/").status_code == 403


def test_links_to_the_old_job_admin_pages_redirect_to_the_new_ones(acme):
    viewer = staff("vic", acme, Role.VIEWER)
    job = job_create(job_type="simple-task", organization=acme)

    old = viewer.get(f"/admin/agents/job/{job.pk}/change/?_changelist_filters=x")

    assert old.status_code == 301
    assert old["Location"] == f"{job_url(job)}?_changelist_filters=x"
    assert viewer.get(old["Location"]).status_code == 200
