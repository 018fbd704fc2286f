"""ruff (lint and format), mypy and the import contracts over the whole project, so CI
fails on a lint or type error, unformatted code or an import that breaks the layers."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


CHECKS = {
    "ruff": [str(BIN / "ruff"), "check", "."],
    "mypy": [str(BIN / "mypy"), "."],
}
# Checks started when the suite was collected (tests/conftest.py), by id.
_started: dict[str, subprocess.Popen[str]] = {}


def start(check: str) -> None:
    """Run a check in the background: mypy takes a minute of one core, which the rest of
    the suite, mostly waiting on workers and the database, leaves idle."""
    _started[check] = subprocess.Popen(
        CHECKS[check], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def stop_started() -> None:
    """Kill checks the suite started but did not reach (it stopped early, or deselected
    them after collection)."""
    while _started:
        _started.popitem()[1].kill()


@pytest.mark.parametrize("check", list(CHECKS))
def test_code_quality(check: str):
    if check not in _started:
        start(check)
    process = _started.pop(check)
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, output


def test_the_models_and_their_migrations_agree():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
