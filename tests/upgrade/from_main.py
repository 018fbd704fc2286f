"""Run by tests/upgrade/test_upgrade_from_main.py in a process of its own, against a
database of its own (DATABASE_URL): the layout issue's upgrade, end to end.

1. `migrate` to the schema the last release before the re-layout had (agents 0008,
   checkpoints 0004, accounts 0002): the same migration files, and its post_migrate,
   which makes content types and permissions from the migration state (Job in agents).
2. Write rows as that release's runtime did: a job paused at a checkpoint that needs
   two approvals and has one, an agent's job parked at its concurrency cap, a finished
   job of the agent, groups and a user holding the old `agents.*_job` permissions.
3. `migrate` to the current schema, then with the current code: the second approval
   resumes the paused job, which finishes; the parked job is still the agent's and
   still waits; the permissions moved with the models; the job admin's links work.

Prints one JSON object of what it found; the test asserts on it.
"""

import json
import os
import sys
from datetime import timedelta
from typing import Any

OLD = [
    ("accounts", "0002_organization_webhook_secret_organization_webhook_url"),
    ("agents", "0008_job_request_id"),
    ("checkpoints", "0004_checkpoint_organization_required"),
]


def old_release_rows(apps: Any) -> dict[str, Any]:
    """What the old runtime and services left in the database, written as they wrote it."""
    from django.utils import timezone

    now = timezone.now()
    organization = apps.get_model("accounts", "Organization").objects.create(
        name="Acme", slug="acme"
    )
    user_model = apps.get_model("auth", "User")
    group_model = apps.get_model("auth", "Group")
    permission = apps.get_model("auth", "Permission")

    def perms(*dotted: str) -> list[Any]:
        return [
            permission.objects.get(
                content_type__app_label=name.split(".")[0], codename=name.split(".")[1]
            )
            for name in dotted
        ]

    approvers = group_model.objects.create(name="approvers")
    approvers.permissions.set(
        perms("checkpoints.decide_checkpoint", "checkpoints.view_checkpoint", "agents.view_job")
    )
    operators = group_model.objects.create(name="operators")
    operators.permissions.set(perms("agents.add_job", "agents.change_job", "agents.view_job"))
    users = {
        name: user_model.objects.create(username=name, is_staff=True, password="!")
        for name in ("olga", "alice", "bob", "carol")
    }
    for name in ("alice", "bob"):
        users[name].groups.add(approvers)
    users["carol"].groups.add(operators)
    users["carol"].user_permissions.add(*perms("agents.view_jobstep"))

    job_model = apps.get_model("agents", "Job")
    step_model = apps.get_model("agents", "JobStep")
    event_model = apps.get_model("agents", "JobEvent")
    # Paused at its first wait: the checkpoint row and the waiting step commit together.
    paused = job_model.objects.create(
        job_type="test-approval",
        input={"required_approvals": 2, "payload": {"n": 7}},
        status="waiting",
        wait_reason="checkpoint",
        attempts=1,
        max_attempts=3,
        organization=organization,
        created_by=users["olga"],
        started_at=now,
        last_enqueued_at=now,
    )
    step_model.objects.create(
        job=paused,
        key="go",
        position=0,
        kind="wait",
        status="waiting",
        output=None,
        attempt=1,
        started_at=now,
    )
    for seq, kind in enumerate(
        ["job.queued", "job.started", "checkpoint.opened", "job.waiting"], start=1
    ):
        event_model.objects.create(job=paused, seq=seq, kind=kind, data={})
    checkpoint = apps.get_model("checkpoints", "Checkpoint").objects.create(
        job=paused,
        organization=organization,
        key="go",
        kind="approval",
        title="Go?",
        payload={"n": 7},
        status="pending",
        required_approvals=2,
        on_timeout="reject",
    )
    apps.get_model("checkpoints", "CheckpointDecision").objects.create(
        checkpoint=checkpoint, user=users["alice"], verdict="approved", reason="fine by me"
    )

    agent = apps.get_model("agents", "Agent").objects.create(
        organization=organization, name="solo", max_concurrency=1, status="busy"
    )
    done = job_model.objects.create(
        job_type="agent-task",
        input={"agent_id": agent.pk, "task": "x"},
        status="succeeded",
        attempts=1,
        organization=organization,
        agent=agent,
        started_at=now,
        finished_at=now + timedelta(seconds=2),
        tokens_in=10,
        tokens_out=5,
    )
    running = job_model.objects.create(
        job_type="agent-task",
        input={"agent_id": agent.pk, "task": "y"},
        status="running",
        attempts=1,
        organization=organization,
        agent=agent,
        started_at=now,
        lease_owner="elsewhere",
        lease_expires_at=now + timedelta(minutes=10),
    )
    parked = job_model.objects.create(
        job_type="agent-task",
        input={"agent_id": agent.pk, "task": "z"},
        status="waiting",
        wait_reason="agent concurrency",
        wake_at=now + timedelta(minutes=5),
        attempts=1,
        organization=organization,
        agent=agent,
    )
    return {
        "paused": str(paused.pk),
        "checkpoint": checkpoint.pk,
        "agent": agent.pk,
        "done": str(done.pk),
        "running": str(running.pk),
        "parked": str(parked.pk),
    }


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    for app, migration in OLD:
        call_command("migrate", app, migration, verbosity=0)
    old_state = MigrationExecutor(connection).loader.project_state(OLD)
    rows = old_release_rows(old_state.apps)
    call_command("migrate", verbosity=0)
    print(json.dumps({"rows": rows, **after_upgrade(rows)}, default=str))


def after_upgrade(rows: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.auth.models import Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.test import Client

    from agents.models import Agent
    from agents.selectors import agent_statistics
    from checkpoints.models import Checkpoint
    from checkpoints.services import checkpoint_approve
    from jobs.models import Job
    from jobs.runtime.engine import run_job

    found: dict[str, Any] = {}
    found["content_types"] = sorted(
        f"{ct.app_label}.{ct.model}" for ct in ContentType.objects.filter(model__startswith="job")
    )
    found["permissions"] = {
        name: sorted(User.objects.get(username=name).get_all_permissions())
        for name in ("bob", "carol")
    }
    found["stale_permissions"] = Permission.objects.filter(
        content_type__app_label="agents", codename__endswith="job"
    ).count()

    # The paused job: the second approval settles the checkpoint and resumes it.
    checkpoint = Checkpoint.objects.get(pk=rows["checkpoint"])
    checkpoint_approve(checkpoint=checkpoint, user=User.objects.get(username="bob"))
    found["after_approval"] = Job.objects.get(pk=rows["paused"]).status
    found["run"] = str(run_job(rows["paused"]))
    paused = Job.objects.get(pk=rows["paused"])
    found["paused_job"] = {
        "status": paused.status,
        "result": paused.result,
        "events": list(paused.events.order_by("seq").values_list("kind", flat=True)),
    }
    found["decisions"] = list(
        checkpoint.decisions.order_by("pk").values_list("user__username", "verdict")
    )

    # The agent's jobs: still its own (its key), the parked one still waiting for a slot.
    keys = dict(
        Job.objects.filter(pk__in=[rows["done"], rows["running"], rows["parked"]]).values_list(
            "pk", "concurrency_key"
        )
    )
    found["keys"] = sorted(set(keys.values()))
    parked = Job.objects.get(pk=rows["parked"])
    found["parked"] = [parked.status, parked.wait_reason]
    found["statistics"] = agent_statistics(Agent.objects.get(pk=rows["agent"]))
    found["parked_run"] = str(run_job(rows["parked"]))  # its slot is still taken

    # The job admin, at its new address and at the old one.
    admin = User.objects.create_superuser("root", "root@localhost", "x")
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    found["admin_page"] = client.get(f"/admin/jobs/job/{rows['paused']}/change/").status_code
    old = client.get(f"/admin/agents/job/{rows['paused']}/change/")
    found["old_admin_link"] = [old.status_code, old.get("Location")]
    found["review_page"] = client.get(
        f"/admin/checkpoints/checkpoint/{rows['checkpoint']}/change/"
    ).status_code
    return found


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
