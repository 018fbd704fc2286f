"""Indexes added to tables that may be large when an upgrade reaches them are built
without blocking writes (CREATE INDEX CONCURRENTLY) on PostgreSQL."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db(transaction=True)  # CONCURRENTLY refuses a transaction
def test_the_retention_index_of_jobs_is_built_concurrently():
    out = StringIO()
    call_command("sqlmigrate", "jobs", "0004", stdout=out)
    assert 'CREATE INDEX CONCURRENTLY "job_root_finished_idx"' in out.getvalue()
    assert "BEGIN" not in out.getvalue()  # outside a transaction, as it must be
