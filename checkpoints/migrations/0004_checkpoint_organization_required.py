"""Checkpoint.organization becomes required, with the review-queue index (a separate
migration for the same reason as agents 0005)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("checkpoints", "0003_checkpoint_organization")]

    operations = [
        migrations.AlterField(
            model_name="checkpoint",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                    related_name="checkpoints", to="accounts.organization"),
        ),
        migrations.AddIndex(
            model_name="checkpoint",
            index=models.Index(fields=["organization", "status", "opened_at"],
                               name="checkpoint_org_queue_idx"),
        ),
    ]
