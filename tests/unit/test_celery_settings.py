"""Read the Celery configuration back, so a typo in a setting name fails here."""

from django.conf import settings

import checkpoints.tasks  # noqa: F401
import jobs.tasks  # noqa: F401  (the worker autodiscovers; here we import)
import workflows.tasks  # noqa: F401
from config.celery import app


def test_crash_safety_settings_reach_celery():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.result_backend == "django-db"
    assert conf.task_time_limit > conf.task_soft_time_limit > 0


def test_redis_transport_options_are_explicit():
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] > app.conf.task_time_limit
    assert options["priority_steps"] == list(range(10))
    assert options["queue_order_strategy"] == "priority"


def test_beat_runs_the_reconciler_expiry_schedules_and_retention():
    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert tasks == {
        "agents.reconcile",
        "checkpoints.expire_due",
        "workflows.fire_schedules",
        "jobs.prune",
    }
    assert set(tasks) <= set(app.tasks.keys())
    assert app.conf.result_expires == settings.CELERY_RESULT_EXPIRES > 0


def test_run_task_options():
    task = app.tasks["agents.run_job"]
    assert task.acks_late and task.reject_on_worker_lost
    assert app.conf.task_default_queue == settings.CELERY_TASK_DEFAULT_QUEUE
