"""Retention (jobs/retention.py) looks for finished top-level jobs, oldest first."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0003_remove_job_agent"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("finished_at__isnull", False), ("parent__isnull", True)),
                fields=["finished_at", "id"],
                name="job_root_finished_idx",
            ),
        ),
    ]
