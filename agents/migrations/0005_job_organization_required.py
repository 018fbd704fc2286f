"""Job.organization becomes required (0004 gave orphans the default organization).
A separate migration: PostgreSQL refuses ALTER TABLE with the UPDATE's deferred
foreign-key checks still pending in the same transaction."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("agents", "0004_job_organization_default")]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="organization",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                    related_name="jobs", to="accounts.organization"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["organization", "-created_at"], name="job_org_created_idx"),
        ),
    ]
