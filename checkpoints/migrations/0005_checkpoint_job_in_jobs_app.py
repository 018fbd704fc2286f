"""The Job model moved to the jobs app (same table): point the foreign key at it in
Django's state; the database constraint already references agents_job."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("checkpoints", "0004_checkpoint_organization_required"),
        ("jobs", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="checkpoint",
                    name="job",
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                            related_name="checkpoints", to="jobs.job"),
                ),
            ],
        ),
    ]
