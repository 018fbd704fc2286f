"""Decisions outlive their job: the checkpoint link may become null (retention), and
the decision then keeps what it was about. The new columns have database defaults or
are nullable, so the previous release's code still inserts decisions during a rollout."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_organization_webhook_secret_organization_webhook_url"),
        ("checkpoints", "0005_checkpoint_job_in_jobs_app"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkpointdecision",
            name="job_ref",
            field=models.UUIDField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="checkpointdecision",
            name="job_type",
            field=models.CharField(blank=True, db_default="", default="", max_length=100),
        ),
        migrations.AddField(
            model_name="checkpointdecision",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.AddField(
            model_name="checkpointdecision",
            name="checkpoint_key",
            field=models.CharField(blank=True, db_default="", default="", max_length=200),
        ),
        migrations.AddField(
            model_name="checkpointdecision",
            name="checkpoint_title",
            field=models.CharField(blank=True, db_default="", default="", max_length=300),
        ),
        migrations.AlterField(
            model_name="checkpointdecision",
            name="checkpoint",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="decisions",
                to="checkpoints.checkpoint",
            ),
        ),
        migrations.AddIndex(
            model_name="checkpointdecision",
            index=models.Index(
                condition=models.Q(("checkpoint__isnull", True)),
                fields=["created_at"],
                name="decision_detached_idx",
            ),
        ),
    ]
