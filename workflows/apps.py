from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Stub until the workflows issue: definitions, runs, triggers, events."""

    name = "workflows"
