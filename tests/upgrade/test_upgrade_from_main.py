"""Upgrading a database of the release before the re-layout (Job in the agents app, a
foreign key from jobs to agents): every row, permission and admin link survives, and a
job paused before the upgrade resumes after it. See from_main.py for the scenario."""

import json
import os
import subprocess
import sys
import uuid

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
