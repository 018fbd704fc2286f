"""Reading settings from the environment (12-factor), and the one list of them.

Every variable is declared where it is read, with its help: `env_str("X", default,
"what it does")` in config/settings.py, or `document(...)` there for the few read
elsewhere (provider keys, the command line's acting user). The declarations are the
single source of the configuration reference: `python manage.py configuration --write`
renders docs/configuration.md and .env.example from them, and a test fails when either
file is out of date.
"""

import os
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as a person would write it in .env
    help: str
    section: str


VARIABLES: dict[str, Variable] = {}
_section = ["General"]


def section(title: str) -> None:
    """Variables declared from here on are listed under `title`."""
    _section[0] = title


def document(name: str, default: object, help: str, *, shown: str | None = None) -> None:
    """Declare a variable (its default as shown, and what it does) for the reference."""
    if shown is None:
        if isinstance(default, bool):
            shown = "1" if default else "0"
        elif isinstance(default, list | tuple):
            shown = ",".join(map(str, default))
        else:
            shown = (
                ""
                if default is None
                else f"{default:g}"
                if isinstance(default, float)
                else str(default)
            )
    VARIABLES.setdefault(name, Variable(name, shown, help, _section[0]))


def env_str(name: str, default: str, help: str = "", *, shown: str | None = None) -> str:
    document(name, default, help, shown=shown)
    return os.environ.get(name, default)


def env_bool(name: str, default: bool, help: str = "", *, shown: str | None = None) -> bool:
    document(name, default, help, shown=shown)
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int, help: str = "", *, shown: str | None = None) -> int:
    document(name, default, help, shown=shown)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float, help: str = "", *, shown: str | None = None) -> float:
    document(name, default, help, shown=shown)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(
    name: str, default: list[str], help: str = "", *, shown: str | None = None
) -> list[str]:
    document(name, default, help, shown=shown)
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- the reference -----------------------------------------------------------------------
def _by_section() -> dict[str, list[Variable]]:
    sections: dict[str, list[Variable]] = {}
    for variable in VARIABLES.values():
        sections.setdefault(variable.section, []).append(variable)
    return sections


def render_markdown() -> str:
    lines = [
        "# Configuration",
        "",
        "Every setting comes from an environment variable; with none set, `make run` "
        "works on its defaults (SQLite, the offline model provider, a broker it finds "
        "or starts). Production sets at least `DEBUG=0`, `SECRET_KEY`, `DATABASE_URL` "
        "and `CELERY_BROKER_URL` (see [operations](operations.md)).",
        "",
        "This page is generated from the declarations in `config/settings.py` "
        "(`python manage.py configuration --write`, which also writes `.env.example`); "
        "edit those, not this page.",
        "",
    ]
    for title, variables in _by_section().items():
        lines += [f"## {title}", "", "| Variable | Default | What it does |", "|---|---|---|"]
        for v in variables:
            default = f"`{v.default}`" if v.default else "(empty)"
            escaped = v.help.replace("|", r"\|")
            lines.append(f"| `{v.name}` | {default} | {escaped} |")
        lines.append("")
    return "\n".join(lines)


def render_env_example() -> str:
    lines = [
        "# Countersign settings: every variable, commented out, at its default (generated",
        "# from config/settings.py by `python manage.py configuration --write`; see",
        "# docs/configuration.md). Nothing loads this file by itself: docker compose",
        "# reads ./.env for the ${...} in docker-compose.yml; in a shell, load it with",
        "#   set -a; . ./.env; set +a",
        "# An empty value is not the same as an unset one: an empty boolean reads as false.",
    ]
    for title, variables in _by_section().items():
        lines += ["", f"# --- {title} " + "-" * max(3, 84 - len(title))]
        for v in variables:
            lines += [f"# {v.help}", f"# {v.name}={v.default}"]
    return "\n".join(lines) + "\n"
