"""Job, JobStep and JobEvent move here from the agents app, where they were created.

Nothing changes in the database: the tables keep their names (agents_job,
agents_jobstep, agents_jobevent), so this migration only tells Django's state that
the models now belong to `jobs`. The content types are renamed in place, so the
permissions of existing groups and users (and admin log entries) follow the models.
"""

import uuid

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("job", "jobstep", "jobevent")


def rename_content_types(apps, schema_editor, old="agents", new="jobs"):
    content_type = apps.get_model("contenttypes", "ContentType")
    permission = apps.get_model("auth", "Permission")
    log_entry = apps.get_model("admin", "LogEntry")
    db = schema_editor.connection.alias
    for model in MOVED:
        source = content_type.objects.using(db).filter(app_label=old, model=model).first()
        if source is None:
            continue  # a new database: post_migrate makes the types
        target = content_type.objects.using(db).filter(app_label=new, model=model).first()
        if target is None:
            source.app_label = new
            source.save(update_fields=["app_label"])
            continue
        # Both exist (a partial migrate and back ran post_migrate in between): merge the
        # old type into the new one, so no group or user loses a permission.
        for old_permission in permission.objects.using(db).filter(content_type=source):
            kept = permission.objects.using(db).filter(
                content_type=target, codename=old_permission.codename).first()
            if kept is None:
                old_permission.content_type = target
                old_permission.save(update_fields=["content_type"])
                continue
            kept.group_set.add(*old_permission.group_set.all())
            kept.user_set.add(*old_permission.user_set.all())
            old_permission.delete()
        log_entry.objects.using(db).filter(content_type=source).update(content_type=target)
        source.delete()


def restore_content_types(apps, schema_editor):
    rename_content_types(apps, schema_editor, old="jobs", new="agents")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("accounts", "0002_organization_webhook_secret_organization_webhook_url"),
        ("agents", "0008_job_request_id"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Job',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('job_type', models.CharField(db_index=True, max_length=100)),
                        ('input', models.JSONField(blank=True, default=dict)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('waiting', 'Waiting'), ('retrying', 'Retrying'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('rejected', 'Rejected'), ('cancelled', 'Cancelled')], db_index=True, default='queued', max_length=16)),
                        ('wait_reason', models.CharField(blank=True, default='', max_length=32)),
                        ('wake_at', models.DateTimeField(blank=True, null=True)),
                        ('priority', models.PositiveSmallIntegerField(default=5, help_text='0 (lowest) to 9 (most urgent).', validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(9)])),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('max_attempts', models.PositiveIntegerField(default=3)),
                        ('result', models.JSONField(blank=True, null=True)),
                        ('error_type', models.CharField(blank=True, default='', max_length=200)),
                        ('error_message', models.TextField(blank=True, default='')),
                        ('error_traceback', models.TextField(blank=True, default='')),
                        ('idempotency_key', models.CharField(blank=True, default='', max_length=200)),
                        ('request_id', models.CharField(blank=True, default='', max_length=100)),
                        ('cancel_requested', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('last_enqueued_at', models.DateTimeField(blank=True, null=True)),
                        ('lease_owner', models.CharField(blank=True, default='', max_length=200)),
                        ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                        ('tokens_in', models.PositiveBigIntegerField(default=0)),
                        ('tokens_out', models.PositiveBigIntegerField(default=0)),
                        ('cost', models.DecimalField(blank=True, decimal_places=10, max_digits=20, null=True)),
                        ('agent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='jobs', to='agents.agent')),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='jobs', to=settings.AUTH_USER_MODEL)),
                        ('organization', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='jobs', to='accounts.organization')),
                        ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='children', to='jobs.job')),
                    ],
                    options={
                        'db_table': 'agents_job',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='JobEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveIntegerField()),
                        ('kind', models.CharField(max_length=64)),
                        ('data', models.JSONField(blank=True, default=dict)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='jobs.job')),
                    ],
                    options={
                        'db_table': 'agents_jobevent',
                        'ordering': ['job', 'seq'],
                    },
                ),
                migrations.CreateModel(
                    name='JobStep',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=200)),
                        ('position', models.PositiveIntegerField()),
                        ('kind', models.CharField(choices=[('step', 'Step'), ('wait', 'Wait')], default='step', max_length=8)),
                        ('status', models.CharField(choices=[('succeeded', 'Succeeded'), ('failed', 'Failed'), ('waiting', 'Waiting')], max_length=16)),
                        ('output', models.JSONField(blank=True, null=True)),
                        ('error', models.TextField(blank=True, default='')),
                        ('attempt', models.PositiveIntegerField(default=1)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='jobs.job')),
                    ],
                    options={
                        'db_table': 'agents_jobstep',
                        'ordering': ['job', 'position'],
                    },
                ),
                migrations.AddIndex(
                    model_name='job',
                    index=models.Index(fields=['status', 'wake_at'], name='job_status_wake_idx'),
                ),
                migrations.AddIndex(
                    model_name='job',
                    index=models.Index(fields=['status', 'lease_expires_at'], name='job_status_lease_idx'),
                ),
                migrations.AddIndex(
                    model_name='job',
                    index=models.Index(fields=['organization', '-created_at'], name='job_org_created_idx'),
                ),
                migrations.AddConstraint(
                    model_name='job',
                    constraint=models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('created_by', 'idempotency_key'), name='job_idempotency_key_unique_per_creator'),
                ),
                migrations.AddConstraint(
                    model_name='job',
                    constraint=models.UniqueConstraint(condition=models.Q(('created_by__isnull', True), models.Q(('idempotency_key', ''), _negated=True)), fields=('idempotency_key',), name='job_idempotency_key_unique_without_creator'),
                ),
                migrations.AddConstraint(
                    model_name='job',
                    constraint=models.CheckConstraint(condition=models.Q(('priority__gte', 0), ('priority__lte', 9)), name='job_priority_0_9'),
                ),
                migrations.AddConstraint(
                    model_name='jobevent',
                    constraint=models.UniqueConstraint(fields=('job', 'seq'), name='jobevent_unique_job_seq'),
                ),
                migrations.AddConstraint(
                    model_name='jobstep',
                    constraint=models.UniqueConstraint(fields=('job', 'key'), name='jobstep_unique_job_key'),
                ),
            ],
        ),
        migrations.RunPython(rename_content_types, restore_content_types),
    ]
