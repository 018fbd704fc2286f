"""`manage.py check --deploy` is clean with production settings."""

import os
import subprocess
import sys

from django.conf import settings


def test_deploy_check_is_clean():
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "x" * 30 + "-production-like-secret-key-0123",
        "ALLOWED_HOSTS": "countersign.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
