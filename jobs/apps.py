from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        import importlib

        from django.conf import settings

        import jobs.metrics  # noqa: F401  (registers the runtime's metrics)
        from core import sentry
        from jobs.runtime import children, job_finished
        from jobs.runtime.engine import RUN_OP
        from jobs.runtime.queue import RUN_JOB_TASK
        from jobs.services import job_cancel_children

        job_finished.connect(children.wake_parent, dispatch_uid="jobs.wake_parent")
        job_finished.connect(job_cancel_children, dispatch_uid="jobs.cancel_children")
        sentry.sample_as_jobs(task=RUN_JOB_TASK, op=RUN_OP)
        for module in settings.COUNTERSIGN_HANDLER_MODULES:
            importlib.import_module(module)
