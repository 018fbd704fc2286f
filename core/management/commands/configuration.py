"""`manage.py configuration [--write | --check]`: the configuration reference, rendered
from the declarations in config/settings.py (core/env.py)."""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.env import render_env_example, render_markdown


def generated() -> dict[Path, str]:
    return {
        Path(settings.BASE_DIR) / "docs" / "configuration.md": render_markdown(),
        Path(settings.BASE_DIR) / ".env.example": render_env_example(),
    }


class Command(BaseCommand):
    help = (
        "Print the configuration reference; --write updates docs/configuration.md and "
        ".env.example, --check fails if either is out of date."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--write", action="store_true")
        mode.add_argument("--check", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        files = generated()
        if options["write"]:
            for path, text in files.items():
                path.write_text(text)
                self.stdout.write(f"wrote {path.relative_to(settings.BASE_DIR)}")
        elif options["check"]:
            stale = [
                str(path.relative_to(settings.BASE_DIR))
                for path, text in files.items()
                if not path.exists() or path.read_text() != text
            ]
            if stale:
                raise CommandError(
                    f"out of date: {', '.join(stale)}; run `python manage.py configuration --write`"
                )
        else:
            self.stdout.write(render_markdown())
