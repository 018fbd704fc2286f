from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        import importlib

        from django.conf import settings

        from jobs.runtime import children
        from jobs.runtime.signals import job_finished

        for module in settings.COUNTERSIGN_HANDLER_MODULES:
            importlib.import_module(module)
        job_finished.connect(children.wake_parent, dispatch_uid="jobs.wake_parent")
