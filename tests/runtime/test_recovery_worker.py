"""Recovery time after faults, with production timings: bench/recovery.py restarts a
PostgreSQL cluster of its own under steady load, and a Redis of its own while jobs wait
in its queue, and measures how long past each server's return the worst job waited."""

import json
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.worker


def test_jobs_recover_within_seconds_of_a_database_or_broker_restart():
    result = subprocess.run(
        [sys.executable, "bench/recovery.py", "--json", "--load-seconds", "6"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    database, broker = figures["database_restart"], figures["broker_restart"]
    assert database["jobs"] > 50 and broker["jobs"] == 20
    assert database["worst_seconds"] <= 5.0, figures  # past PostgreSQL's return
    assert broker["worst_seconds"] <= 10.0, figures  # past Redis' return, empty
