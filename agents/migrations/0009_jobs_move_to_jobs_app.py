"""Job, JobStep and JobEvent now belong to the jobs app (see jobs/migrations/0001):
drop them from this app's state. The tables stay where they are."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0008_job_request_id"),
        ("jobs", "0001_initial"),
        # Every foreign key to the old model is moved first.
        ("checkpoints", "0005_checkpoint_job_in_jobs_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="job",
                    field=models.ForeignKey(blank=True, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="messages", to="jobs.job"),
                ),
                migrations.AlterField(
                    model_name="memory",
                    name="source_job",
                    field=models.ForeignKey(blank=True, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL,
                                            related_name="+", to="jobs.job"),
                ),
                migrations.RemoveField(model_name="job", name="agent"),
                migrations.RemoveField(model_name="job", name="created_by"),
                migrations.RemoveField(model_name="job", name="organization"),
                migrations.RemoveField(model_name="job", name="parent"),
                migrations.RemoveField(model_name="jobstep", name="job"),
                migrations.RemoveField(model_name="jobevent", name="job"),
                migrations.DeleteModel(name="JobEvent"),
                migrations.DeleteModel(name="JobStep"),
                migrations.DeleteModel(name="Job"),
            ],
        ),
    ]
