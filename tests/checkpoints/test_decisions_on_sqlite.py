"""Decisions on SQLite, `make run`'s default database: the locking read without FOR UPDATE
and the writes one at a time (`resolve_wait`'s portable path), in a pytest of its own whose
DATABASE_URL names SQLite (Django tests it in memory), since this suite's is PostgreSQL."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = [
    # the portable variants only: the folded ones are PostgreSQL's
    "tests/checkpoints/test_decision_statements.py::test_an_approval_writes_its_decision_status_events_and_wake_up[portable]",
    "tests/checkpoints/test_decision_statements.py::test_an_approval_short_of_the_quorum_neither_settles_nor_wakes[portable]",
    "tests/checkpoints/test_decision_statements.py::test_a_job_no_longer_waiting_is_not_woken_and_gets_no_wake_event[portable]",
    "tests/checkpoints/test_decision_statements.py::test_a_settled_wait_resumes_from_its_step_without_reading_the_checkpoint[portable]",
    "tests/checkpoints/test_decision_statements.py::test_the_wait_of_a_job_not_waiting_is_left_to_its_run[portable]",
    "tests/checkpoints/test_decision_statements.py::test_a_checkpoint_asked_again_counts_only_the_decisions_since[portable]",
    "tests/checkpoints/test_decision_statements.py::test_an_expired_checkpoint_settles_its_wait_with_its_on_timeout[portable]",
    "tests/checkpoints/test_decision_edge_cases.py::test_a_checkpoint_past_its_expiry_cannot_be_approved_late",
    "tests/checkpoints/test_decision_edge_cases.py::test_an_edit_short_of_the_quorum_does_not_survive_expiry",
]


def test_decisions_are_made_and_written_on_sqlite(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'countersign.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary.group(1)) == len(TESTS), result.stdout[-2000:]
    assert "skipped" not in result.stdout.splitlines()[-1]
