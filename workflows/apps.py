from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        import workflows.metrics  # noqa: F401  (registers the workflow metrics)
        from agents.tools import register_tool_resolver
        from jobs.runtime import job_finished, job_retried, register_concurrency_limit
        from workflows import events, retries, runner, services, tools  # runner: job types

        register_concurrency_limit("workflow", runner.run_limit, held_while_waiting=True)
        job_retried.connect(retries.rewind_failed_node, dispatch_uid="workflows.rewind")
        job_finished.connect(services.run_ended, dispatch_uid="workflows.run_ended")
        job_finished.connect(events.waits_closed, dispatch_uid="workflows.waits_closed")
        register_tool_resolver(tools.PREFIX, tools.workflow_tool)
