"""`manage.py workflows list | show SLUG | validate FILE | import FILE | export SLUG |
run SLUG --input JSON [--wait] [--json]`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import command_organization
from core.cli import find_user, parse_json, table, to_json
from core.errors import ApplicationError
from jobs.cli import event_line
from jobs.follow import ended, follow
from jobs.models import Job, JobStatus
from workflows import services
from workflows.models import Workflow
from workflows.selectors import run_nodes, run_pending_checkpoints

EXIT_FAILED = 1
EXIT_TIMEOUT = 2


class Command(BaseCommand):
    help = "List, show, validate, import, export and run workflows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--org",
            metavar="SLUG",
            help="the organization (default: the --as user's, else "
            "$COUNTERSIGN_DEFAULT_ORGANIZATION)",
        )
        parser.add_argument(
            "--as", dest="as_user", metavar="USER", help="who does it (default: $COUNTERSIGN_USER)"
        )
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help="the organization's workflows")
        listing.add_argument("--json", action="store_true")
        show = actions.add_parser("show", help="one workflow: versions, triggers, definition")
        show.add_argument("slug")
        show.add_argument("--json", action="store_true")
        validate = actions.add_parser("validate", help="check a definition file, save nothing")
        validate.add_argument("file", help="a JSON file: a definition, or an exported workflow")
        validate.add_argument("--json", action="store_true")
        importing = actions.add_parser(
            "import", help="create the workflow of an exported file, or save a new version"
        )
        importing.add_argument("file")
        importing.add_argument("--json", action="store_true")
        export = actions.add_parser("export", help="print a workflow as a file import takes")
        export.add_argument("slug")
        run = actions.add_parser("run", help="start a run")
        run.add_argument("slug")
        run.add_argument("--input", default="{}", help="JSON object, or @file.json")
        run.add_argument(
            "--wait", action="store_true", help="follow the run until it ends or waits for a person"
        )
        run.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
        run.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        self.user = find_user(options["as_user"])
        self.organization = command_organization(options["org"], self.user)
        try:
            getattr(self, f"do_{options['action']}")(options)
        except ApplicationError as exc:
            details = "; ".join(
                f"{path}: {' '.join(problems)}" for path, problems in exc.fields.items()
            )
            raise CommandError(details or str(exc)) from None

    def _workflow(self, slug: str) -> Workflow:
        workflow = Workflow.objects.filter(organization=self.organization, slug=slug).first()
        if workflow is None:
            raise CommandError(f"no workflow {slug!r} in {self.organization.slug}")
        return workflow

    def _file(self, path: str) -> dict[str, Any]:
        data = parse_json(f"@{path}", path)
        if not isinstance(data, dict):
            raise CommandError(f"{path}: expected a JSON object")
        return data

    def do_list(self, options: dict[str, Any]) -> None:
        rows = [
            {
                "slug": w.slug,
                "name": w.name,
                "active": w.active,
                "version": w.current_version.number if w.current_version else None,
            }
            for w in Workflow.objects.filter(organization=self.organization)
            .select_related("current_version")
            .order_by("slug")
        ]
        if options["json"]:
            self.stdout.write(to_json(rows))
        elif rows:
            self.stdout.write(
                table(
                    ["SLUG", "NAME", "ACTIVE", "VERSION"],
                    [[r["slug"], r["name"], r["active"], r["version"]] for r in rows],
                )
            )
        else:
            self.stdout.write("no workflows")

    def do_show(self, options: dict[str, Any]) -> None:
        workflow = self._workflow(options["slug"])
        data = {
            **_exported(workflow),
            "active": workflow.active,
            "version": workflow.current_version.number if workflow.current_version else None,
            "versions": list(
                workflow.versions.order_by("-number").values("number", "checksum", "created_at")
            ),
            "triggers": list(
                workflow.triggers.values("kind", "event_name", "cron", "timezone", "next_fire_at")
            ),
        }
        self.stdout.write(to_json(data))

    def do_validate(self, options: dict[str, Any]) -> None:
        data = self._file(options["file"])
        definition = data.get("definition", data)
        listed = data.get("agents")
        bringing: list[Any] = listed if isinstance(listed, list) else []
        errors = services.definition_errors(
            organization=self.organization,
            definition=definition,
            slug=data.get("slug"),
            bringing_agents=frozenset(
                a["name"]
                for a in bringing
                if isinstance(a, dict) and isinstance(a.get("name"), str)
            ),
        )
        if options["json"]:
            self.stdout.write(to_json({"valid": not errors, "errors": errors}))
        else:
            for path, problems in errors.items():
                for problem in problems:
                    self.stdout.write(f"{path}: {problem}")
        if errors:
            raise CommandError(f"{len(errors)} field(s) with errors", returncode=EXIT_FAILED)
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS("valid"))

    def do_import(self, options: dict[str, Any]) -> None:
        workflow, created, agents = services.workflow_import(
            organization=self.organization, data=self._file(options["file"]), created_by=self.user
        )
        number = workflow.current_version.number if workflow.current_version else None
        if options["json"]:
            self.stdout.write(
                to_json(
                    {
                        "slug": workflow.slug,
                        "version": number,
                        "created": created,
                        "agents_created": agents,
                    }
                )
            )
            return
        if agents:
            self.stdout.write(f"created agents: {', '.join(agents)}")
        self.stdout.write(
            self.style.SUCCESS(f"{'created' if created else 'saved'} {workflow.slug} v{number}")
        )

    def do_export(self, options: dict[str, Any]) -> None:
        self.stdout.write(to_json(_exported(self._workflow(options["slug"]))))

    def do_run(self, options: dict[str, Any]) -> None:
        workflow = self._workflow(options["slug"])
        data = parse_json(options["input"], "--input")
        if not isinstance(data, dict):
            raise CommandError("--input must be a JSON object")
        run = services.workflow_run_start(workflow=workflow, input=data, created_by=self.user)
        as_json = options["json"]
        if not options["wait"]:
            self.stdout.write(to_json({"run": str(run.job_id)}) if as_json else str(run.job_id))
            return
        try:
            for event in follow(str(run.job_id), until=_ended_or_asks, timeout=options["timeout"]):
                self.stdout.write(to_json(event, pretty=False) if as_json else event_line(event))
                self.stdout.flush()
        except TimeoutError:
            raise CommandError(
                f"timed out; run {run.job_id} goes on", returncode=EXIT_TIMEOUT
            ) from None
        run.job.refresh_from_db()
        summary = {
            "run": str(run.job_id),
            "status": run.job.status,
            "output": (run.job.result or {}).get("output"),
            "error": run.job.error_message or None,
            "waiting": [
                {"node": n["id"], "checkpoint_id": n["checkpoint_id"]}
                for n in run_nodes(run)
                if n["status"] == "waiting"
            ],
        }
        self.stdout.write(to_json(summary, pretty=not as_json))
        if run.job.status not in (JobStatus.SUCCEEDED, JobStatus.WAITING):
            raise CommandError(f"run {run.job_id} {run.job.status}", returncode=EXIT_FAILED)


def _ended_or_asks(job: Job) -> bool:
    """Where `run --wait` stops: the run ended, or waits for a person in any branch (not
    for its agents, branches, events or timers, which go on by themselves)."""
    return ended(job) or run_pending_checkpoints(job.pk).exists()


def _exported(workflow: Workflow) -> dict[str, Any]:
    return {
        "slug": workflow.slug,
        "name": workflow.name,
        "description": workflow.description,
        "definition": workflow.current_version.definition if workflow.current_version else None,
    }
