"""The agent link now lives in `concurrency_key` (filled by 0002).

The column `agents_job.agent_id` leaves Django's state only: workers of the previous
release, still running during a rolling upgrade, read and write it, and the upgrade
rule is to add first and remove in a later release (docs/operations.md, Upgrades). A
later migration drops the column. 0002 filled the key in its own transaction:
PostgreSQL refuses to alter a table with row changes pending in the same one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_concurrency_key"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.RemoveField(model_name="job", name="agent")],
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(condition=models.Q(("concurrency_key", ""), _negated=True),
                               fields=["concurrency_key", "status"],
                               name="job_concurrency_idx"),
        ),
    ]
