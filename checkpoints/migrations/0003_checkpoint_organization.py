"""Checkpoints carry their job's organization, indexed for the review queue."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_from_jobs(apps, schema_editor):
    Checkpoint = apps.get_model("checkpoints", "Checkpoint")
    Job = apps.get_model("agents", "Job")
    Checkpoint.objects.update(organization_id=Subquery(
        Job.objects.filter(pk=OuterRef("job_id")).values("organization_id")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_organization_webhook_secret_organization_webhook_url"),
        ("agents", "0005_job_organization_required"),
        ("checkpoints", "0002_webhookdelivery"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkpoint",
            name="organization",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="checkpoints", to="accounts.organization"),
        ),
        migrations.RunPython(copy_from_jobs, migrations.RunPython.noop),
    ]
