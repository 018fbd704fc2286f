"""The Celery application: settings come from Django (CELERY_* names)."""

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("countersign")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _use_django_logging(**kwargs: Any) -> None:
    """Workers and beat log through settings.LOGGING (JSON or text, with job and request
    ids) instead of Celery's own setup: with a receiver here Celery leaves the root
    logger alone. `--loglevel` is therefore not used; LOG_LEVEL is."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
