"""`manage.py jobs list|show|cancel|retry`."""

import uuid

import pytest
from django.core.management.base import CommandError

from jobs.models import JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create

pytestmark = pytest.mark.django_db


def test_list_shows_a_table_newest_first(cli):
    older = job_create(job_type="simple-task")
    newer = job_create(job_type="code-generation", priority=8)

    out = cli("jobs", "list")

    header, *rows = out.splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "PRI", "ATTEMPTS", "CREATED", "DURATION"]
    assert rows[0].startswith(str(newer.pk)) and rows[1].startswith(str(older.pk))
    assert "code-generation" in rows[0] and "queued" in rows[0]


def test_list_json_filters_by_status_and_type(cli):
    done = job_create(job_type="simple-task")
    run_job(str(done.pk))
    job_create(job_type="simple-task")
    job_create(job_type="code-generation")

    data = cli.json("jobs", "list", "--status", "succeeded")
    assert [j["id"] for j in data] == [str(done.pk)]
    assert data[0]["status"] == "succeeded" and data[0]["duration_seconds"] >= 0

    assert len(cli.json("jobs", "list", "--type", "simple-task")) == 2
    assert len(cli.json("jobs", "list", "--limit", "1")) == 1


def test_list_rejects_an_unknown_status(cli):
    with pytest.raises(CommandError, match="invalid choice"):
        cli("jobs", "list", "--status", "sleeping")


def test_show_json_has_steps_checkpoints_and_events(cli, paused_job):
    data = cli.json("jobs", "show", str(paused_job.pk))

    assert data["id"] == str(paused_job.pk) and data["status"] == "waiting"
    assert data["wait_reason"] == "checkpoint" and data["created_by"] == "creator"
    assert [(s["key"], s["kind"], s["status"]) for s in data["steps"]] == [
        ("draft", "step", "succeeded"),
        ("review", "step", "succeeded"),
        ("write-files", "wait", "waiting"),
    ]
    assert [(c["key"], c["status"]) for c in data["checkpoints"]] == [("write-files", "pending")]
    assert [e["kind"] for e in data["events"]][-1] == "job.waiting"


def test_show_prints_fields_steps_checkpoints_and_events(cli, paused_job):
    out = cli("jobs", "show", str(paused_job.pk))

    assert f"Job:        {paused_job.pk}" in out
    assert "Status:     waiting (checkpoint)" in out
    assert "Steps:" in out and "write-files" in out
    checkpoint = paused_job.checkpoints.get()
    row = next(line for line in out.splitlines() if "approval" in line)
    assert row.split() == [
        str(checkpoint.pk),
        "write-files",
        "approval",
        "pending",
        "Write",
        "2",
        "file(s)",
    ]
    assert "job.waiting" in out


def test_show_prints_the_error_of_a_failed_job(cli, tmp_path):
    job = job_create(
        job_type="test-flaky-job",
        input={"log": str(tmp_path / "log"), "failures": 0, "fatal": True},
    )
    run_job(str(job.pk))

    out = cli("jobs", "show", str(job.pk))

    assert "Error:\n  NonRetryableError: cannot go on" in out


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid", "42"])
def test_unknown_or_malformed_id_is_a_clear_error(cli, job_id):
    for action in ("show", "cancel", "retry"):
        with pytest.raises(CommandError, match=f"no job with id '{job_id}'"):
            cli("jobs", action, job_id)


def test_cancel_a_queued_job(cli, people):
    job = job_create(job_type="simple-task")

    data = cli.json("jobs", "cancel", str(job.pk), "--as", "alice")

    assert data["status"] == "cancelled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.events.get(kind="job.cancelled").data == {"by": "alice"}


def test_cancel_a_waiting_job_closes_its_checkpoint(cli, paused_job):
    out = cli("jobs", "cancel", str(paused_job.pk))

    assert f"job {paused_job.pk} is now cancelled" in out
    assert paused_job.checkpoints.get().status == "cancelled"


def test_cancel_a_finished_job_is_a_conflict(cli):
    job = job_create(job_type="simple-task")
    run_job(str(job.pk))

    with pytest.raises(CommandError, match="job is already succeeded"):
        cli("jobs", "cancel", str(job.pk))


def test_retry_a_cancelled_job_then_it_runs_to_the_end(cli):
    job = job_create(job_type="simple-task")
    cli("jobs", "cancel", str(job.pk))

    out = cli("jobs", "retry", str(job.pk))

    assert f"job {job.pk} is now queued" in out
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED


def test_retry_a_queued_job_is_a_conflict(cli):
    job = job_create(job_type="simple-task")

    with pytest.raises(CommandError, match="only failed or cancelled jobs can be retried"):
        cli("jobs", "retry", str(job.pk))
