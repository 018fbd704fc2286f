"""Checkpoints through a real worker: pause, approve, reject, edit, input, expiry."""

import json
import threading
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus
from jobs.models import Job, JobStatus
from jobs.runtime import job_workspace
from jobs.services import job_create
from tests.factories import make_user
from tests.utils import wait_for, wait_status


@pytest.fixture
def people(worker):
    return {
        "creator": make_user("creator"),
        "alice": make_user("alice", approver=True),
        "bob": make_user("bob", approver=True),
        "viewer": make_user("viewer"),
    }


def pending_checkpoint(job: Job, key: str | None = None) -> Checkpoint:
    def find():
        qs = Checkpoint.objects.filter(job=job, status=CheckpointStatus.PENDING)
        return qs.filter(key=key).first() if key else qs.first()

    return wait_for(find, message=f"a pending checkpoint on job {job.pk}")


def test_code_generation_pauses_then_writes_approved_files(people):
    # given
    job = job_create(
        job_type="code-generation", input={"prompt": "hello world"}, created_by=people["creator"]
    )
    # when
    wait_status(job.pk, JobStatus.WAITING)
    checkpoint = pending_checkpoint(job)
    workspace = Path(checkpoint.payload["workspace"])
    # then: the reviewer sees every file, whole and as a diff; nothing is on disk yet
    files = {f["path"]: f for f in checkpoint.payload["files"]}
    assert set(files) == {"hello_world.py", "tests/test_hello_world.py"}
    assert "def hello_world()" in files["hello_world.py"]["content"]
    assert files["hello_world.py"]["diff"].startswith("--- /dev/null\n+++ b/hello_world.py")
    assert not workspace.exists()
    assert Job.objects.get(pk=job.pk).wait_reason == "checkpoint"

    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"], reason="fine")

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert (workspace / "hello_world.py").read_text() == files["hello_world.py"]["content"]
    result = Job.objects.get(pk=job.pk).result
    assert result["approved_by"] == ["alice"] and result["edited"] is False
    kinds = list(job.events.values_list("kind", flat=True))
    assert (
        kinds.index("job.waiting")
        < kinds.index("checkpoint.decided")
        < kinds.index("job.resumed")
        < kinds.index("job.succeeded")
    )


def test_rejection_writes_nothing_and_ends_rejected(people):
    job = job_create(
        job_type="code-generation", input={"prompt": "nope"}, created_by=people["creator"]
    )
    checkpoint = pending_checkpoint(job)

    with pytest.raises(services.CheckpointValidationError):
        services.checkpoint_reject(checkpoint=checkpoint, user=people["alice"], reason="  ")
    services.checkpoint_reject(
        checkpoint=checkpoint, user=people["alice"], reason="not what we asked for"
    )

    wait_status(job.pk, JobStatus.REJECTED)
    job.refresh_from_db()
    assert "not what we asked for" in job.error_message
    assert not Path(checkpoint.payload["workspace"]).exists()
    assert not job.steps.filter(key="write").exists()


def test_approve_with_edits_writes_the_edited_version(people):
    job = job_create(
        job_type="code-generation",
        input={"files": [{"path": "app.py", "content": "print('draft')\n"}]},
        created_by=people["creator"],
    )
    checkpoint = pending_checkpoint(job)
    workspace = Path(checkpoint.payload["workspace"])

    with pytest.raises(services.CheckpointValidationError) as bad:
        services.checkpoint_approve(
            checkpoint=checkpoint, user=people["alice"], payload={"files": [{"path": "x"}]}
        )
    assert "files.0" in bad.value.fields
    edited = {
        "files": [
            {"path": "app.py", "content": "print('edited')\n"},
            {"path": "lib/util.py", "content": "X = 1\n"},
        ]
    }
    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"], payload=edited)

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert (workspace / "app.py").read_text() == "print('edited')\n"
    assert (workspace / "lib" / "util.py").read_text() == "X = 1\n"
    assert Job.objects.get(pk=job.pk).result["edited"] is True


def test_edits_escaping_the_workspace_are_refused_at_approval(people, tmp_path):
    job = job_create(
        job_type="code-generation",
        input={"files": [{"path": "ok.py", "content": "1\n"}]},
        created_by=people["creator"],
    )
    checkpoint = pending_checkpoint(job)
    workspace = Path(checkpoint.payload["workspace"])
    workspace.mkdir(parents=True)
    (workspace / "out").symlink_to(tmp_path)

    with pytest.raises(services.CheckpointValidationError) as refused:
        services.checkpoint_approve(
            checkpoint=checkpoint,
            user=people["alice"],
            payload={
                "files": [
                    {"path": "fine.py", "content": "ok\n"},
                    {"path": "../escape.py", "content": "x"},
                    {"path": "/etc/cron.d/x", "content": "x"},
                    {"path": "out/x.py", "content": "x"},
                ]
            },
        )

    assert set(refused.value.fields) == {"files.1.path", "files.2.path", "files.3.path"}
    assert "outside the workspace" in refused.value.fields["files.3.path"][0]
    assert not checkpoint.decisions.exists()
    assert Job.objects.get(pk=job.pk).status == JobStatus.WAITING
    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])
    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert sorted(p.name for p in workspace.iterdir()) == ["ok.py", "out"]
    assert not (tmp_path / "x.py").exists()


def test_input_checkpoint_validates_then_resumes_with_the_data(people):
    job = job_create(job_type="test-input", created_by=people["creator"])
    checkpoint = pending_checkpoint(job)

    with pytest.raises(services.CheckpointValidationError) as bad:
        services.checkpoint_submit_input(
            checkpoint=checkpoint, user=people["alice"], data={"branch": 3}
        )
    assert bad.value.fields == {"branch": ["3 is not of type 'string'"]}
    with pytest.raises(services.CheckpointValidationError):
        services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])
    services.checkpoint_submit_input(
        checkpoint=checkpoint, user=people["alice"], data={"branch": "main"}
    )

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=job.pk).result == {"branch": "main"}


@pytest.mark.parametrize(
    ("on_timeout", "final_status"),
    [
        ("approve", JobStatus.SUCCEEDED),
        ("reject", JobStatus.REJECTED),
        ("fail", JobStatus.FAILED),
    ],
)
def test_expiry_follows_on_timeout(people, on_timeout, final_status):
    job = job_create(
        job_type="test-approval",
        input={"expires_in": 0.5, "on_timeout": on_timeout},
        created_by=people["creator"],
    )
    checkpoint = pending_checkpoint(job)

    # beat runs expire_due every 0.5 s in the test worker
    wait_status(job.pk, final_status, timeout=20)
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.EXPIRED
    decision = checkpoint.decisions.get()
    assert decision.verdict == "expired" and decision.user is None
    if on_timeout == "approve":
        assert Job.objects.get(pk=job.pk).result["timed_out"] is True
    if on_timeout == "fail":
        assert Job.objects.get(pk=job.pk).error_type == "CheckpointExpired"


def test_two_concurrent_decisions_one_wins_one_conflicts(people):
    job = job_create(job_type="test-approval", created_by=people["creator"])
    checkpoint = pending_checkpoint(job)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(name: str, action: str) -> None:
        try:
            barrier.wait()
            if action == "approve":
                services.checkpoint_approve(checkpoint=checkpoint, user=people[name])
            else:
                services.checkpoint_reject(checkpoint=checkpoint, user=people[name], reason="no")
            outcomes[name] = "ok"
        except services.CheckpointConflict as exc:
            outcomes[name] = f"conflict: {exc}"
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=("alice", "approve")),
        threading.Thread(target=decide, args=("bob", "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(v.split(":")[0] for v in outcomes.values()) == ["conflict", "ok"]
    assert CheckpointDecision.objects.filter(checkpoint=checkpoint).count() == 1
    winner = next(n for n, v in outcomes.items() if v == "ok")
    wait_status(job.pk, JobStatus.SUCCEEDED if winner == "alice" else JobStatus.REJECTED)


def test_a_decided_checkpoint_answers_with_the_existing_decision(people):
    job = job_create(job_type="test-approval", created_by=people["creator"])
    checkpoint = pending_checkpoint(job)
    first = services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])

    with pytest.raises(services.CheckpointConflict) as conflict:
        services.checkpoint_reject(checkpoint=checkpoint, user=people["bob"], reason="late")
    assert conflict.value.decision == first
    wait_status(job.pk, JobStatus.SUCCEEDED)


def test_two_approvals_required(people):
    job = job_create(
        job_type="test-approval", input={"required_approvals": 2}, created_by=people["creator"]
    )
    checkpoint = pending_checkpoint(job)

    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])
    with pytest.raises(services.CheckpointConflict):
        services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.PENDING
    assert Job.objects.get(pk=job.pk).status == JobStatus.WAITING
    services.checkpoint_approve(checkpoint=checkpoint, user=people["bob"])

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert sorted(Job.objects.get(pk=job.pk).result["decided_by"]) == ["alice", "bob"]


def test_an_edit_restarts_the_approval_count(people):
    # Four eyes must see the same content: alice's approval was for the original.
    job = job_create(
        job_type="test-approval",
        input={"required_approvals": 2, "payload": {"n": 1}},
        created_by=people["creator"],
    )
    checkpoint = pending_checkpoint(job)

    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])
    services.checkpoint_approve(checkpoint=checkpoint, user=people["bob"], payload={"n": 2})
    checkpoint.refresh_from_db()
    assert checkpoint.status == CheckpointStatus.PENDING
    services.checkpoint_approve(checkpoint=checkpoint, user=people["alice"])

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=job.pk).result["payload"] == {"n": 2}


def test_who_may_decide(people, settings):
    approver_creator = make_user("carol", approver=True)
    job = job_create(job_type="test-approval", created_by=approver_creator)
    checkpoint = pending_checkpoint(job)

    with pytest.raises(PermissionDenied, match="decide_checkpoint"):
        services.checkpoint_approve(checkpoint=checkpoint, user=people["viewer"])
    with pytest.raises(PermissionDenied, match="four-eyes"):
        services.checkpoint_approve(checkpoint=checkpoint, user=approver_creator)
    settings.COUNTERSIGN_ALLOW_SELF_APPROVAL = True
    services.checkpoint_approve(checkpoint=checkpoint, user=approver_creator)

    wait_status(job.pk, JobStatus.SUCCEEDED)


def test_a_handler_may_catch_a_rejection(people):
    job = job_create(job_type="test-catch-reject", created_by=people["creator"])
    checkpoint = pending_checkpoint(job)
    services.checkpoint_reject(
        checkpoint=checkpoint, user=people["alice"], reason="use the fallback"
    )

    wait_status(job.pk, JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=job.pk).result == {"rejected": "use the fallback"}


def test_data_processing_two_checkpoints_then_saved(people):
    records = [
        {"name": "a", "kind": "x", "amount": 2},
        {"name": "b", "kind": "y", "amount": 5},
        {"name": "c", "kind": "x", "amount": 3},
    ]
    job = job_create(
        job_type="data-processing",
        created_by=people["creator"],
        input={
            "records": records,
            "operations": [
                {"op": "filter", "field": "kind", "equals": "x"},
                {"op": "uppercase", "field": "name"},
                {"op": "sum", "field": "amount"},
            ],
        },
    )
    plan = pending_checkpoint(job, "approve-plan")
    assert plan.payload["record_count"] == 3
    services.checkpoint_approve(checkpoint=plan, user=people["alice"])

    result = pending_checkpoint(job, "approve-result")
    assert result.payload["rows"] == [
        {"name": "A", "kind": "x", "amount": 2},
        {"name": "C", "kind": "x", "amount": 3},
    ]
    assert not job.steps.filter(key="save").exists()
    services.checkpoint_approve(checkpoint=result, user=people["bob"])

    wait_status(job.pk, JobStatus.SUCCEEDED)
    job.refresh_from_db()
    assert job.result["totals"] == {"amount": 5.0}
    assert list(job.events.values_list("kind", flat=True)).count("progress") == 1
    saved = json.loads((job_workspace(str(job.pk)) / "result.json").read_text())
    assert [row["name"] for row in saved["rows"]] == ["A", "C"]


def test_data_processing_uses_the_edited_plan_and_rows(people):
    records = [{"name": "a", "amount": 2}, {"name": "b", "amount": 5}]
    job = job_create(
        job_type="data-processing",
        created_by=people["creator"],
        input={"records": records, "operations": [{"op": "sum", "field": "amount"}]},
    )
    plan = pending_checkpoint(job, "approve-plan")
    with pytest.raises(services.CheckpointValidationError):
        services.checkpoint_approve(
            checkpoint=plan, user=people["alice"], payload={"operations": [{"op": "rm -rf"}]}
        )
    services.checkpoint_approve(
        checkpoint=plan,
        user=people["alice"],
        payload={"operations": [{"op": "uppercase", "field": "name"}]},
    )

    result = pending_checkpoint(job, "approve-result")
    assert [r["name"] for r in result.payload["rows"]] == ["A", "B"]
    services.checkpoint_approve(
        checkpoint=result, user=people["bob"], payload={"rows": [{"name": "A", "amount": 2}]}
    )

    wait_status(job.pk, JobStatus.SUCCEEDED)
    saved = json.loads((job_workspace(str(job.pk)) / "result.json").read_text())
    assert saved["rows"] == [{"name": "A", "amount": 2}]
    assert Job.objects.get(pk=job.pk).result["edited"] is True
