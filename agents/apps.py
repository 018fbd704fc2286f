from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        import agents.metrics  # noqa: F401  (registers the model-call metrics)
        from agents import runs
        from agents.handlers import load_builtin_handlers
        from jobs.runtime import register_concurrency_limit, run_ended, run_started

        register_concurrency_limit(runs.PREFIX, runs.agent_limit)
        run_started.connect(runs.on_run_started, dispatch_uid="agents.run_started")
        run_ended.connect(runs.on_run_ended, dispatch_uid="agents.run_ended")
        load_builtin_handlers()
