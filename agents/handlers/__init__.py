"""Job handlers. Built-in ones register on import; more come from
COUNTERSIGN_HANDLER_MODULES (a comma-separated list of modules)."""

import importlib

from django.conf import settings

BUILTIN_MODULES = (
    "agents.handlers.simple_task",
    "agents.handlers.code_generation",
    "agents.handlers.data_processing",
    "agents.handlers.agent_task",
)


def load_handler_modules() -> None:
    for module in (*BUILTIN_MODULES, *settings.COUNTERSIGN_HANDLER_MODULES):
        importlib.import_module(module)
