"""`manage.py enqueue`: creating jobs, refusing bad requests, following progress."""

import json
import re
from typing import Any

import pytest
from django.core.management.base import CommandError

from jobs.management.commands import enqueue
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_get_or_create

pytestmark = pytest.mark.django_db


def test_prints_the_id_of_the_job_it_created(cli, people):
    out = cli(
        "enqueue",
        "simple-task",
        "--input",
        '{"description": "demo"}',
        "--priority",
        "7",
        "--as",
        "creator",
    )

    job = Job.objects.get()
    assert out.strip() == str(job.pk)
    assert (job.job_type, job.status, job.priority) == ("simple-task", JobStatus.QUEUED, 7)
    assert job.input == {"description": "demo"} and job.created_by == people.creator
    assert list(job.events.values_list("kind", flat=True)) == ["job.queued"]


def test_json_output_describes_the_job(cli):
    data = cli.json("enqueue", "simple-task")

    job = Job.objects.get()
    assert data == {"id": str(job.pk), "status": "queued", "job_type": "simple-task", "priority": 5}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simple-task", "--input", "{not json"], "--input is not valid JSON"),
        (["simple-task", "--input", "[1, 2]"], "--input must be a JSON object"),
        (
            ["no-such-type"],
            "unknown job type 'no-such-type'; known types: agent-task, code-generation",
        ),
        (["simple-task", "--priority", "10"], "priority must be an integer from 0 to 9"),
        (["simple-task", "--priority", "-1"], "priority must be an integer from 0 to 9"),
        (["simple-task", "--as", "nobody"], "no user named 'nobody'"),
    ],
)
def test_bad_requests_fail_clearly_and_create_nothing(cli, args, message):
    with pytest.raises(CommandError, match=message.replace("[", r"\[")) as raised:
        cli("enqueue", *args)

    assert raised.value.returncode == 1
    assert not Job.objects.exists()


def test_unknown_type_lists_every_known_type(cli):
    with pytest.raises(CommandError) as raised:
        cli("enqueue", "nope")

    for known in ("code-generation", "data-processing", "simple-task"):
        assert known in str(raised.value)


def test_input_can_come_from_a_file(cli, tmp_path):
    path = tmp_path / "input.json"
    path.write_text('{"description": "from a file"}')

    cli("enqueue", "simple-task", "--input", f"@{path}")

    assert Job.objects.get().input == {"description": "from a file"}


def test_idempotency_key_returns_the_first_job(cli, people):
    first = cli("enqueue", "simple-task", "--as", "creator", "--idempotency-key", "k1").strip()
    again = cli("enqueue", "simple-task", "--as", "creator", "--idempotency-key", "k1").strip()

    assert first == again and Job.objects.count() == 1
    assert "was used before" in cli.err


def test_a_key_without_a_user_is_not_answered_from_another_organization(cli):
    from accounts.models import Organization

    Organization.objects.create(name="Acme", slug="acme")
    Organization.objects.create(name="Globex", slug="globex")
    first = cli("enqueue", "simple-task", "--org", "acme", "--idempotency-key", "nightly")
    for job_type in ("simple-task", "test-noop"):  # nor its type named
        with pytest.raises(CommandError, match="used for a job of another organization$"):
            cli("enqueue", job_type, "--org", "globex", "--idempotency-key", "nightly")
    again = cli("enqueue", "simple-task", "--org", "acme", "--idempotency-key", "nightly")
    assert first == again and Job.objects.get().organization.slug == "acme"


@pytest.fixture
def runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the worker: run each job the command creates right away."""

    def create_and_run(**kwargs: Any) -> tuple[Job, bool]:
        job, created = job_get_or_create(**kwargs)
        run_job(str(job.pk))
        return job, created

    monkeypatch.setattr(enqueue, "job_get_or_create", create_and_run)


def test_wait_follows_events_until_the_job_succeeds(cli, runs_in_process):
    out = cli("enqueue", "simple-task", "--input", '{"data": {"a": 1}}', "--wait")

    lines = out.splitlines()
    job = Job.objects.get()
    assert lines[0] == str(job.pk)
    kinds = [line.split()[2] for line in lines if re.match(r"  \d\d:\d\d:\d\d  #\d", line)]
    assert kinds[:2] == ["job.queued", "job.started"]
    assert kinds[-1] == "job.succeeded"
    assert f"job {job.pk} succeeded" in out


def test_wait_stops_at_a_checkpoint_with_the_approve_command(cli, people, runs_in_process):
    out = cli(
        "enqueue", "code-generation", "--input", '{"prompt": "hello"}', "--as", "creator", "--wait"
    )

    job = Job.objects.get()
    checkpoint = job.checkpoints.get()
    assert f"job {job.pk} waiting" in out
    assert "job.waiting" in out and "checkpoint.opened" in out
    assert checkpoint.title in out
    assert f"python manage.py checkpoints approve {checkpoint.pk} --as USER" in out
    assert "must not be creator" in out


def test_wait_json_prints_json_lines(cli, people, runs_in_process):
    out = cli("enqueue", "code-generation", "--input", '{"prompt": "hello"}', "--wait", "--json")

    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["status"] == "queued"
    assert [line["kind"] for line in lines[1:-1]][-1] == "job.waiting"
    final = lines[-1]
    assert final["status"] == "waiting"
    assert final["pending_checkpoints"][0]["title"] == "Write 2 file(s)"


def test_wait_exits_1_when_the_job_fails(cli, tmp_path, runs_in_process):
    with pytest.raises(CommandError) as raised:
        cli(
            "enqueue",
            "test-flaky-job",
            "--input",
            f'{{"log": "{tmp_path}/log", "failures": 0, "fatal": true}}',
            "--wait",
        )

    assert raised.value.returncode == enqueue.EXIT_FAILED
    assert "failed: NonRetryableError: cannot go on" in cli.out
    assert Job.objects.get().status == JobStatus.FAILED


def test_wait_exits_2_on_timeout(cli):
    with pytest.raises(CommandError, match="timed out after 0.3s") as raised:
        cli("enqueue", "simple-task", "--wait", "--timeout", "0.3")

    assert raised.value.returncode == enqueue.EXIT_TIMEOUT
    assert Job.objects.get().status == JobStatus.QUEUED


def test_a_job_joins_the_named_organization_or_else_the_default_one(cli, people, settings):
    from accounts.models import Membership, Organization, Role

    acme = Organization.objects.create(name="Acme", slug="acme")
    cli("enqueue", "simple-task", "--org", "acme")
    assert Job.objects.get().organization == acme

    Job.objects.all().delete()
    settings.COUNTERSIGN_DEFAULT_ORGANIZATION = "ops"
    cli("enqueue", "simple-task")
    assert Job.objects.get().organization.slug == "ops"  # created on first use

    Job.objects.all().delete()
    Membership.objects.create(user=people.creator, organization=acme, role=Role.OPERATOR)
    cli("enqueue", "simple-task", "--as", "creator")  # a member's job is in their organization
    assert Job.objects.get().organization == acme


def test_an_unknown_or_foreign_organization_is_refused(cli, people):
    from accounts.models import Membership, Organization, Role

    acme = Organization.objects.create(name="Acme", slug="acme")
    Organization.objects.create(name="Globex", slug="globex")
    Membership.objects.create(user=people.creator, organization=acme, role=Role.OPERATOR)
    with pytest.raises(CommandError, match="no organization with slug 'nope'"):
        cli("enqueue", "simple-task", "--org", "nope")
    with pytest.raises(CommandError, match="creator belongs to acme, not globex"):
        cli("enqueue", "simple-task", "--org", "globex", "--as", "creator")
    assert not Job.objects.exists()
