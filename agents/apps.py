from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents and jobs"

    def ready(self) -> None:
        from agents.handlers import load_handler_modules

        load_handler_modules()
