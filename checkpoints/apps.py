from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints"

    def ready(self) -> None:
        import checkpoints.cli  # noqa: F401  (a job's checkpoints in the job commands)
        import checkpoints.metrics  # noqa: F401  (registers the checkpoint metrics)
        from checkpoints import receivers
        from checkpoints.waiter import CheckpointWaiter
        from jobs.runtime import job_finished, register_waiter

        register_waiter("checkpoint", CheckpointWaiter)
        job_finished.connect(
            receivers.close_pending_checkpoints, dispatch_uid="checkpoints.close_pending"
        )
