from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints"

    def ready(self) -> None:
        from checkpoints import receivers
        from checkpoints.waiter import CheckpointWaiter
        from jobs.runtime import register_waiter
        from jobs.runtime.signals import job_finished

        register_waiter("checkpoint", CheckpointWaiter)
        job_finished.connect(receivers.close_pending_checkpoints,
                             dispatch_uid="checkpoints.close_pending")
