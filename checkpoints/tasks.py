from celery import shared_task

from checkpoints import services


@shared_task(name="checkpoints.expire_due", ignore_result=True)
def expire_due() -> int:
    return services.expire_due()
