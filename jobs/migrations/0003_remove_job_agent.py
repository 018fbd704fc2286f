"""The agent link now lives in `concurrency_key` (see 0002, which filled it in its own
transaction: PostgreSQL refuses to alter a table with row changes pending in the same one)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0002_concurrency_key"),
    ]

    operations = [
        migrations.RemoveField(model_name="job", name="agent"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(condition=models.Q(("concurrency_key", ""), _negated=True),
                               fields=["concurrency_key", "status"],
                               name="job_concurrency_idx"),
        ),
    ]
