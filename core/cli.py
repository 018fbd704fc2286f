"""Helpers every app's management commands share: arguments, the acting user, JSON,
times and tables."""

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.core.management.base import CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

USER_ENV = "COUNTERSIGN_USER"


# --- arguments ------------------------------------------------------------------------


def parse_json(raw: str, option: str) -> Any:
    """JSON given inline, or `@path` to read it from a file."""
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text()
        except OSError as exc:
            raise CommandError(f"{option}: cannot read {raw[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{option} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def acting_username(given: str | None) -> str:
    """--as USER, else $COUNTERSIGN_USER, else ""."""
    return (given or os.environ.get(USER_ENV, "")).strip()


def find_user(given: str | None, *, required: bool = False, action: str = "do this") -> User | None:
    """The acting user named by --as or $COUNTERSIGN_USER; CommandError if unknown."""
    username = acting_username(given)
    if not username:
        if required:
            raise CommandError(
                f"say who you are to {action}: pass --as USERNAME (or set {USER_ENV})"
            )
        return None
    try:
        return User.objects.get_by_natural_key(username)
    except User.DoesNotExist:
        raise CommandError(f"no user named {username!r}") from None


# --- formatting -------------------------------------------------------------------------


def to_json(data: Any, *, pretty: bool = True) -> str:
    if pretty:
        return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
    return json.dumps(data, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def fmt_time(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def fmt_clock(value: datetime) -> str:
    return timezone.localtime(value).strftime("%H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def shorten(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain, left-aligned text table."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def username(user: AbstractBaseUser | None) -> str | None:
    return user.get_username() if user is not None else None
