"""Concurrency through a generic key instead of a foreign key to agents.Agent.

The runtime knew the Agent model only to cap how many of an agent's jobs run at once
and to keep its status. Now a job carries a `concurrency_key` ("agent:12") whose limit
the owning app registers; an agent's jobs are those with its key. Existing jobs of an
agent get its key, and jobs parked at the agent's cap keep waiting under the new
reason name.
"""

from django.db import migrations, models


def agent_to_key(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    for agent_id in (job.objects.exclude(agent_id=None).values_list("agent_id", flat=True)
                     .distinct().iterator()):
        job.objects.filter(agent_id=agent_id).update(concurrency_key=f"agent:{agent_id}")
    job.objects.filter(wait_reason="agent concurrency").update(wait_reason="concurrency")


def key_to_agent(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    agent = apps.get_model("agents", "Agent")
    known = set(agent.objects.values_list("pk", flat=True))
    keys = (job.objects.filter(concurrency_key__startswith="agent:")
            .values_list("concurrency_key", flat=True).distinct())
    for key in list(keys):
        agent_id = key.removeprefix("agent:")
        if agent_id.isdecimal() and int(agent_id) in known:
            job.objects.filter(concurrency_key=key).update(agent_id=int(agent_id))
    job.objects.filter(wait_reason="concurrency").update(wait_reason="agent concurrency")


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0001_initial"),
        ("agents", "0009_jobs_move_to_jobs_app"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="concurrency_key",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.RunPython(agent_to_key, key_to_agent),
    ]
