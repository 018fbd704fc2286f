from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents and jobs"

    def ready(self) -> None:
        from agents import receivers
        from agents.handlers import load_handler_modules
        from agents.signals import job_finished

        load_handler_modules()
        job_finished.connect(receivers.wake_parent, dispatch_uid="agents.wake_parent")
