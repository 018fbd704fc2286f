import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """An event's time is the one it was emitted at (a default), not the time its row was
    written (auto_now_add). Both are set in Python: the table does not change, and on
    SQLite AlterField would rebuild it for nothing."""

    dependencies = [
        ("jobs", "0004_retention"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="jobevent",
                    name="created_at",
                    field=models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
        ),
    ]
