"""Upgrading a database of the release before the re-layout (Job in the agents app, a
foreign key from jobs to agents): every row, permission and admin link survives, and a
job paused before the upgrade resumes after it. See from_main.py for the scenario."""

import importlib
import json
import os
import subprocess
import sys
import uuid
from types import SimpleNamespace

import pytest
from django.conf import settings

from bench.database import drop_database, fresh_database
from tests.conftest import RUNTIME_ENV, database_url


def test_a_database_of_the_last_release_upgrades_with_everything_working():
    # given a database of its own, so the suite's schema is never migrated backwards
    name = f"countersign_upgrade_{uuid.uuid4().hex[:8]}"
    url = fresh_database(database_url(), name)
    env = {
        **os.environ,
        **RUNTIME_ENV,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
    }

    # when it is migrated forward and used
    try:
        done = subprocess.run(
            [sys.executable, "tests/upgrade/from_main.py"],
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        drop_database(database_url(), name)

    # then
    assert done.returncode == 0, done.stderr[-5000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["content_types"] == ["jobs.job", "jobs.jobevent", "jobs.jobstep"]
    assert found["stale_permissions"] == 0
    assert {"jobs.view_job", "checkpoints.decide_checkpoint"} <= set(found["permissions"]["bob"])
    assert {"jobs.add_job", "jobs.change_job", "jobs.view_job", "jobs.view_jobstep"} <= set(
        found["permissions"]["carol"]
    )

    assert found["after_approval"] == "queued"  # the decision woke it
    assert found["run"] == "succeeded"
    assert found["paused_job"]["result"]["decided_by"] == ["alice", "bob"]
    assert found["paused_job"]["result"]["payload"] == {"n": 7}
    assert found["paused_job"]["events"] == [
        "job.queued",
        "job.started",
        "checkpoint.opened",
        "job.waiting",
        "checkpoint.decided",
        "job.woken",
        "job.resumed",
        "job.succeeded",
    ]
    assert found["decisions"] == [["alice", "approved"], ["bob", "approved"]]

    agent_key = f"agent:{found['rows']['agent']}"
    assert found["keys"] == [agent_key]
    assert found["parked"] == ["waiting", "concurrency"]
    assert found["statistics"]["executions"] == 3 and found["statistics"]["succeeded"] == 1
    assert found["parked_run"] in ("skipped", "parked")  # not due yet, or still no slot

    assert found["admin_page"] == 200 and found["review_page"] == 200
    paused = found["rows"]["paused"]
    assert found["old_admin_link"] == [301, f"/admin/jobs/job/{paused}/change/"]


@pytest.mark.django_db
def test_a_content_type_made_twice_is_merged_and_no_permission_is_lost():
    """After `migrate agents 0008` and back, post_migrate has made the old types again next
    to the new ones: the rename merges them instead of leaving groups on the old ones."""
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    # given an old content type beside the new one, with a group holding its permission
    old = ContentType.objects.create(app_label="agents", model="job")
    old_view = Permission.objects.create(content_type=old, codename="view_job", name="x")
    old_only = Permission.objects.create(content_type=old, codename="approve_job", name="y")
    group = Group.objects.create(name="legacy")
    group.permissions.add(old_view, old_only)

    # when the migration's rename runs
    migration = importlib.import_module("jobs.migrations.0001_initial")
    migration.rename_content_types(apps, SimpleNamespace(connection=connection))

    # then
    assert not ContentType.objects.filter(app_label="agents", model="job").exists()
    held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
    assert held == {"jobs.view_job", "jobs.approve_job"}
