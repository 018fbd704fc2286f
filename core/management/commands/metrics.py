"""Print what /metrics would serve: for checking a deployment from a shell."""

import sys
from typing import Any

from django.core.management.base import BaseCommand

from core.metrics.exposition import render


class Command(BaseCommand):
    help = "Print the Prometheus exposition that /metrics serves."

    def handle(self, *args: Any, **options: Any) -> None:
        sys.stdout.buffer.write(render())
        sys.stdout.flush()
