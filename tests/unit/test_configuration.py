"""The configuration reference has one source: the declarations in config/settings.py."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from accounts.management.commands.bootstrap import ADMIN_PASSWORD_ENV
from agents.providers.registry import ENDPOINTS
from core.cli import USER_ENV
from core.env import VARIABLES


def test_the_docs_and_env_example_are_generated_from_the_settings():
    call_command("configuration", "--check")  # run `manage.py configuration --write` if not


def test_a_stale_reference_is_refused(tmp_path, settings):
    settings.BASE_DIR = tmp_path
    (tmp_path / "docs").mkdir()
    with pytest.raises(CommandError, match="out of date"):
        call_command("configuration", "--check")


def test_every_variable_the_code_reads_is_documented():
    read_elsewhere = {ADMIN_PASSWORD_ENV, USER_ENV, "PROMETHEUS_MULTIPROC_DIR"}
    read_elsewhere |= {e.key_env for e in ENDPOINTS.values() if e.key_env}
    read_elsewhere |= {e.url_env for e in ENDPOINTS.values() if e.url_env}
    settings_source = (Path(settings.BASE_DIR) / "config" / "settings.py").read_text()
    read_in_settings = set(re.findall(r'env_\w+\(\s*"([A-Z_]+)"', settings_source))
    missing = (read_elsewhere | read_in_settings) - set(VARIABLES)
    assert not missing
    assert all(variable.help for variable in VARIABLES.values())
