"""Retention (jobs/retention.py) looks for finished top-level jobs, oldest first.

Built concurrently on PostgreSQL: an upgrade may meet millions of jobs, and a plain
CREATE INDEX would stop job creation and every run's writes until it is done."""

from django.db import migrations, models

from core.operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("jobs", "0003_remove_job_agent"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="job",
            index=models.Index(
                condition=models.Q(("finished_at__isnull", False), ("parent__isnull", True)),
                fields=["finished_at", "id"],
                name="job_root_finished_idx",
            ),
        ),
    ]
