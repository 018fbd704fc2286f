"""A reviewer in a real browser (Debian's Chromium through Playwright): log in,
open the pending code-generation checkpoint, read the diff, approve, see the job finish."""

import os
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from playwright.sync_api import Browser, Page, expect, sync_playwright

from accounts.models import Membership, Organization, Role
from jobs.models import JobStatus
from jobs.services import job_create
from tests.utils import wait_status

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM
    # calls are still synchronous, so Django's guard is lifted for this module only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


def test_a_reviewer_approves_a_code_generation_checkpoint(worker, live_server, page):
    # given a job of Acme paused at its write-files checkpoint, and Acme's approver
    acme = Organization.objects.create(name="Acme", slug="acme")
    reviewer = User.objects.create_user("april", password="a-long-test-password", is_staff=True)
    reviewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_checkpoint", "view_job"])
    )
    Membership.objects.create(user=reviewer, organization=acme, role=Role.APPROVER)
    job = job_create(job_type="code-generation", organization=acme, input={"prompt": "hello world"})
    wait_status(job.pk, JobStatus.WAITING)

    # when the reviewer logs in, opens it from the index, reads the diff and approves
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "april")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    page.click("text=checkpoint(s) waiting for a decision")
    page.click("#result_list tbody tr a")
    expect(page.locator("h2")).to_contain_text("Write 2 file(s)")
    diff = page.locator('.cs-diff[data-path="hello_world.py"] .add')
    expect(diff.first).to_contain_text('+"""hello world."""')
    expect(diff.filter(has_text="def hello_world()")).to_have_count(1)
    page.fill("form:has(input[value=approve]) input[name=reason]", "looks right")
    page.click("input[value=Approve]")
    expect(page.locator(".messagelist")).to_contain_text("approve recorded")

    # then the job resumes and finishes, and its page says so
    wait_status(job.pk, JobStatus.SUCCEEDED)
    page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator("body")).to_contain_text("succeeded")
