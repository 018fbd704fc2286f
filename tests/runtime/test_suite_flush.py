"""The suite's own guard: a transactional test's flush that deadlocks with a write of the
session worker is tried again (tests/conftest.py), instead of failing the test."""

import re
import threading

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connection

from jobs.processes import poll_until


@pytest.mark.django_db(transaction=True)
def test_a_flush_ended_by_a_deadlock_with_another_writer_is_tried_again():
    db = connection.settings_dict
    where = dict(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    )
    # The flush is one TRUNCATE, which locks its tables in the order it names them.
    tables = re.findall(r'"([^"]+)"', sql_flush(no_style(), connection)[0])
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            call_command("flush", verbosity=0, interactive=False)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()  # this thread's own

    with psycopg.connect(**where) as writer, psycopg.connect(**where, autocommit=True) as probe:
        # Another writer (the worker, say) holds the last table and will want the first.
        writer.execute(f'LOCK TABLE "{tables[-1]}" IN ROW EXCLUSIVE MODE')
        flushing = threading.Thread(target=flush)
        flushing.start()
        poll_until(
            lambda: probe.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'TRUNCATE%'"
            ).fetchone(),
            timeout=10,
            what="the flush waiting for the last table",
        )
        # A deadlock, which the flush, waiting first, detects first and is ended by.
        writer.execute(f'LOCK TABLE "{tables[0]}" IN ROW EXCLUSIVE MODE')
        writer.commit()
        flushing.join(timeout=30)
    assert not flushing.is_alive() and not errors, errors
