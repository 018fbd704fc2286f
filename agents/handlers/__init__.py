"""The built-in job types. Each module registers its handler on import; the agents app
imports them all when Django starts, so every process knows the same types."""

import importlib

BUILTIN_MODULES = (
    "agents.handlers.simple_task",
    "agents.handlers.code_generation",
    "agents.handlers.data_processing",
    "agents.handlers.agent_task",
)


def load_builtin_handlers() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
