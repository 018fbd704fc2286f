"""Every job belongs to an organization: jobs started outside one join the
default organization (COUNTERSIGN_DEFAULT_ORGANIZATION), created if missing."""

from django.conf import settings
from django.db import migrations


def adopt_orphans(apps, schema_editor):
    Job = apps.get_model("agents", "Job")
    Organization = apps.get_model("accounts", "Organization")
    if not Job.objects.filter(organization__isnull=True).exists():
        return
    slug = settings.COUNTERSIGN_DEFAULT_ORGANIZATION
    default, _ = Organization.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("-", " ").title()})
    Job.objects.filter(organization__isnull=True).update(organization=default)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_organization_webhook_secret_organization_webhook_url"),
        ("agents", "0003_job_organization"),
    ]

    operations = [
        migrations.RunPython(adopt_orphans, migrations.RunPython.noop),
    ]
