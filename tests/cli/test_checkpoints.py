"""`manage.py checkpoints list|show|approve|reject|submit`."""

import json

import pytest
from django.core.management.base import CommandError

from checkpoints.models import Checkpoint, CheckpointStatus
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def checkpoint_of(job: Job) -> Checkpoint:
    return job.checkpoints.get()


def test_list_pending_shows_the_code_generation_checkpoint(cli, paused_job):
    checkpoint = checkpoint_of(paused_job)

    out = cli("checkpoints", "list", "--pending")

    header, row = out.splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "KIND", "TITLE"]
    assert row.split()[:3] == [str(checkpoint.pk), "pending", "approval"]
    assert "Write 2 file(s)" in row and "code-generation" in row and str(paused_job.pk) in row


def test_list_puts_pending_first_then_oldest_first(cli, people):
    jobs = [job_create(job_type="test-approval") for _ in range(3)]
    for job in jobs:
        run_job(str(job.pk))
    first, second, third = (checkpoint_of(j) for j in jobs)
    cli("checkpoints", "approve", str(first.pk), "--as", "alice")

    ids = [c["id"] for c in cli.json("checkpoints", "list")]
    pending_ids = [c["id"] for c in cli.json("checkpoints", "list", "--pending")]

    assert ids == [second.pk, third.pk, first.pk]
    assert pending_ids == [second.pk, third.pk]


def test_show_prints_each_file_with_its_diff(cli, paused_job):
    checkpoint = checkpoint_of(paused_job)

    out = cli("checkpoints", "show", str(checkpoint.pk))

    assert out.startswith("Write 2 file(s)\n")
    assert f"Job:        {paused_job.pk} (code-generation, waiting; started by creator)" in out
    assert "== hello_world.py (create)\n--- /dev/null\n+++ b/hello_world.py" in out
    assert "== tests/test_hello_world.py (create)" in out
    assert "+def hello_world() -> str:" in out
    assert "Decisions:\n  (none yet)" in out
    assert f"checkpoints approve {checkpoint.pk} --as USER" in out


def test_show_json_has_payload_and_decisions(cli, paused_job, people):
    checkpoint = checkpoint_of(paused_job)
    cli("checkpoints", "approve", str(checkpoint.pk), "--as", "alice", "--reason", "looks right")

    data = cli.json("checkpoints", "show", str(checkpoint.pk))

    assert data["status"] == "approved" and data["job_type"] == "code-generation"
    assert [f["path"] for f in data["payload"]["files"]] == [
        "hello_world.py",
        "tests/test_hello_world.py",
    ]
    assert [(d["verdict"], d["user"], d["reason"]) for d in data["decisions"]] == [
        ("approved", "alice", "looks right")
    ]


def test_approve_then_the_job_writes_the_files(cli, paused_job, local_runtime):
    checkpoint = checkpoint_of(paused_job)

    out = cli("checkpoints", "approve", str(checkpoint.pk), "--as", "alice")

    assert f"checkpoint {checkpoint.pk} approved by alice" in out
    assert Job.objects.get(pk=paused_job.pk).status == JobStatus.QUEUED  # woken
    assert run_job(str(paused_job.pk)) == JobStatus.SUCCEEDED
    workspace = local_runtime / str(paused_job.pk)
    assert "def hello_world()" in (workspace / "hello_world.py").read_text()
    assert (workspace / "tests" / "test_hello_world.py").is_file()
    assert Job.objects.get(pk=paused_job.pk).result["approved_by"] == ["alice"]


def test_approve_with_an_edited_payload(cli, paused_job, local_runtime, tmp_path):
    checkpoint = checkpoint_of(paused_job)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({"files": [{"path": "only.py", "content": "x = 1\n"}]}))

    data = cli.json(
        "checkpoints", "approve", str(checkpoint.pk), "--as", "alice", "--payload", f"@{edited}"
    )

    assert data["checkpoint"]["status"] == "approved"
    assert data["decision"]["payload"] == {"files": [{"path": "only.py", "content": "x = 1\n"}]}
    run_job(str(paused_job.pk))
    assert (local_runtime / str(paused_job.pk) / "only.py").read_text() == "x = 1\n"
    assert not (local_runtime / str(paused_job.pk) / "hello_world.py").exists()


def test_an_edited_payload_must_match_the_schema(cli, paused_job, people):
    checkpoint = checkpoint_of(paused_job)

    with pytest.raises(CommandError) as raised:
        cli(
            "checkpoints",
            "approve",
            str(checkpoint.pk),
            "--as",
            "alice",
            "--payload",
            '{"files": []}',
        )

    assert "the edited payload is not valid" in str(raised.value)
    assert "files: [] should be non-empty" in str(raised.value)
    assert checkpoint_of(paused_job).status == CheckpointStatus.PENDING


def test_the_acting_user_can_come_from_the_environment(cli, paused_job, monkeypatch):
    monkeypatch.setenv("COUNTERSIGN_USER", "bob")

    data = cli.json("checkpoints", "approve", str(checkpoint_of(paused_job).pk))

    assert data["decision"]["user"] == "bob"


def test_approve_without_a_user_says_to_pass_as(cli, paused_job):
    with pytest.raises(CommandError, match="pass --as USERNAME"):
        cli("checkpoints", "approve", str(checkpoint_of(paused_job).pk))

    assert checkpoint_of(paused_job).status == CheckpointStatus.PENDING


def test_approve_by_an_unknown_user(cli, paused_job):
    with pytest.raises(CommandError, match="no user named 'mallory'"):
        cli("checkpoints", "approve", str(checkpoint_of(paused_job).pk), "--as", "mallory")


def test_the_creator_may_not_approve_their_own_job(cli):
    # the creator may decide checkpoints in general, just not their own job's
    make_user("creator2", approver=True)
    job_id = cli("enqueue", "test-approval", "--as", "creator2").strip()
    run_job(job_id)
    checkpoint = Job.objects.get(pk=job_id).checkpoints.get()

    with pytest.raises(CommandError, match="four-eyes rule"):
        cli("checkpoints", "approve", str(checkpoint.pk), "--as", "creator2")

    assert Checkpoint.objects.get(pk=checkpoint.pk).status == CheckpointStatus.PENDING


def test_a_user_without_the_permission_may_not_decide(cli, paused_job):
    with pytest.raises(CommandError, match="viewer may not decide checkpoints"):
        cli("checkpoints", "approve", str(checkpoint_of(paused_job).pk), "--as", "viewer")


def test_approving_twice_says_who_decided(cli, paused_job):
    checkpoint = checkpoint_of(paused_job)
    cli("checkpoints", "approve", str(checkpoint.pk), "--as", "alice", "--reason", "fine")

    with pytest.raises(CommandError) as raised:
        cli("checkpoints", "approve", str(checkpoint.pk), "--as", "bob")

    message = str(raised.value)
    assert message.startswith("checkpoint is already approved by alice at ")
    assert message.endswith(": fine")


def test_reject_requires_a_reason(cli, paused_job):
    checkpoint = checkpoint_of(paused_job)

    with pytest.raises(CommandError, match="--reason"):
        cli("checkpoints", "reject", str(checkpoint.pk), "--as", "alice")
    with pytest.raises(CommandError, match="reason: This field is required"):
        cli("checkpoints", "reject", str(checkpoint.pk), "--as", "alice", "--reason", "  ")

    assert checkpoint_of(paused_job).status == CheckpointStatus.PENDING


def test_reject_ends_the_job_rejected_without_writing(cli, paused_job, local_runtime):
    checkpoint = checkpoint_of(paused_job)

    data = cli.json(
        "checkpoints",
        "reject",
        str(checkpoint.pk),
        "--as",
        "alice",
        "--reason",
        "not what we asked for",
    )

    assert data["checkpoint"]["status"] == "rejected"
    assert data["decision"]["reason"] == "not what we asked for"
    assert run_job(str(paused_job.pk)) == JobStatus.REJECTED
    assert not (local_runtime / str(paused_job.pk)).exists()
    with pytest.raises(CommandError, match="already rejected by alice"):
        cli("checkpoints", "approve", str(checkpoint.pk), "--as", "bob")


def test_submit_input_validates_against_the_schema(cli, people):
    job = job_create(job_type="test-input")
    run_job(str(job.pk))
    checkpoint = checkpoint_of(job)

    with pytest.raises(CommandError) as raised:
        cli("checkpoints", "submit", str(checkpoint.pk), "--as", "alice", "--data", "{}")
    assert "does not match the checkpoint's schema" in str(raised.value)
    assert "non_field_errors: 'branch' is a required property" in str(raised.value)

    cli(
        "checkpoints", "submit", str(checkpoint.pk), "--as", "alice", "--data", '{"branch": "main"}'
    )
    assert run_job(str(job.pk)) == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=job.pk).result == {"branch": "main"}


def test_submit_bad_json_is_a_clear_error(cli, people):
    with pytest.raises(CommandError, match="--data is not valid JSON"):
        cli("checkpoints", "submit", "1", "--as", "alice", "--data", "{oops")


def test_approving_an_input_checkpoint_points_to_submit(cli, people):
    job = job_create(job_type="test-input")
    run_job(str(job.pk))

    with pytest.raises(CommandError, match="submit its input"):
        cli("checkpoints", "approve", str(checkpoint_of(job).pk), "--as", "alice")


@pytest.mark.parametrize("checkpoint_id", ["999999", "abc"])
def test_unknown_checkpoint_id(cli, people, checkpoint_id):
    for args in (["show", checkpoint_id], ["approve", checkpoint_id, "--as", "alice"]):
        with pytest.raises(CommandError, match=f"no checkpoint with id '{checkpoint_id}'"):
            cli("checkpoints", *args)


def test_a_checkpoint_needing_two_approvals_stays_pending_after_one(cli, people):
    job = job_create(job_type="test-approval", input={"required_approvals": 2})
    run_job(str(job.pk))
    checkpoint = checkpoint_of(job)

    out = cli("checkpoints", "approve", str(checkpoint.pk), "--as", "alice")
    assert "1 of 2 approvals so far" in out
    assert checkpoint_of(job).status == CheckpointStatus.PENDING
    with pytest.raises(CommandError, match="alice has already approved this checkpoint"):
        cli("checkpoints", "approve", str(checkpoint.pk), "--as", "alice")

    cli("checkpoints", "approve", str(checkpoint.pk), "--as", "bob")
    assert checkpoint_of(job).status == CheckpointStatus.APPROVED
