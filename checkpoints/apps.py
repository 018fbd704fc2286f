from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints"

    def ready(self) -> None:
        import checkpoints.cli  # noqa: F401  (a job's checkpoints in the job commands)
        import checkpoints.metrics  # noqa: F401  (registers the checkpoint metrics)
        from checkpoints import receivers
        from checkpoints.models import CheckpointDecision
        from checkpoints.retention import decisions_detach, decisions_prune
        from checkpoints.waiter import CheckpointWaiter
        from jobs.retention import RetentionHook, register_retention_hook
        from jobs.runtime import job_finished, register_waiter

        register_waiter("checkpoint", CheckpointWaiter)
        register_retention_hook(
            RetentionHook(
                label=CheckpointDecision._meta.label,
                before_delete=decisions_detach,
                prune=decisions_prune,
            )
        )
        job_finished.connect(
            receivers.close_pending_checkpoints, dispatch_uid="checkpoints.close_pending"
        )
