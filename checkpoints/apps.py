from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints"

    def ready(self) -> None:
        from agents.runtime import register_waiter
        from agents.signals import job_finished
        from checkpoints import receivers
        from checkpoints.waiter import CheckpointWaiter

        register_waiter("checkpoint", CheckpointWaiter)
        job_finished.connect(receivers.close_pending_checkpoints,
                             dispatch_uid="checkpoints.close_pending")
