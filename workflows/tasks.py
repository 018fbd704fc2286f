"""Beat's work for workflows."""

from celery import shared_task

from workflows import services


@shared_task(name="workflows.fire_schedules", ignore_result=True)
def fire_schedules() -> int:
    return services.schedules_fire()
