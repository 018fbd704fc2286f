from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app uses (logs, Redis, metrics, Sentry, errors); imports no app."""

    name = "core"
    verbose_name = "Core"
