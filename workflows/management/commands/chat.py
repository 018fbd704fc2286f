"""`manage.py chat AGENT` or `chat --workflow SLUG`: talk to an agent (or a workflow
with a message trigger) from the terminal. Each line you type is a
chat job (as POST /api/v1/agents/{id}/chat/ makes); the reply streams as it is written.
A worker must be running (`make run`)."""

import contextlib
import json
import sys
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import Agent
from agents.services import agent_execute
from checkpoints.models import Checkpoint, CheckpointStatus
from core.cli import find_user
from core.errors import ApplicationError
from jobs.follow import follow
from jobs.models import Job, JobStatus
from jobs.runtime import JobError
from workflows.models import Workflow
from workflows.selectors import run_pending_checkpoints
from workflows.services import workflow_message


class Command(BaseCommand):
    help = (
        "Chat with an agent (by name or id), or with a workflow that has a message "
        "trigger (--workflow SLUG), in the terminal; an empty line or EOF ends."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", nargs="?", help="the agent's name or id")
        parser.add_argument(
            "--workflow",
            metavar="SLUG",
            help="talk to this workflow instead: each line starts a run",
        )
        parser.add_argument(
            "--org",
            metavar="SLUG",
            help="the agent's organization, if the name is not unique across organizations",
        )
        parser.add_argument("--session", default="", help="continue this session id")
        parser.add_argument(
            "--as",
            dest="as_user",
            metavar="USER",
            help="who is talking (default: $COUNTERSIGN_USER, else nobody)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=600.0,
            help="seconds to wait for each reply (default 600)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workflow"]:
            self.chat_with_workflow(options)
            return
        if not options["agent"]:
            raise CommandError("name an agent, or --workflow SLUG")
        agent = self.find_agent(options["agent"], options["org"])
        user = find_user(options["as_user"])
        session = options["session"] or uuid.uuid4().hex[:12]
        self.stdout.write(
            f"Chatting with {agent.name} ({agent.provider}/{agent.model}), "
            f"session {session}. An empty line ends."
        )
        for line in self.lines():
            message = line.strip()
            if not message:
                break
            try:
                job = agent_execute(agent=agent, user=user, task=message, session_id=session)
            except JobError as exc:
                raise CommandError(str(exc)) from None
            self.reply(job, options["timeout"])

    def lines(self) -> Any:
        return sys.stdin if not sys.stdin.isatty() else iter(self.prompt, None)

    def chat_with_workflow(self, options: dict[str, Any]) -> None:
        workflows = Workflow.objects.filter(slug=options["workflow"])
        if options["org"]:
            workflows = workflows.filter(organization__slug=options["org"])
        found = list(workflows)
        if len(found) != 1:
            raise CommandError(
                f"{'no' if not found else len(found)} workflow(s) named "
                f"{options['workflow']!r}" + ("; pass --org" if found else "")
            )
        workflow = found[0]
        user = find_user(options["as_user"])
        session = options["session"] or uuid.uuid4().hex[:12]
        self.stdout.write(
            f"Chatting with workflow {workflow.slug}, session {session}. An empty line ends."
        )
        for line in self.lines():
            message = line.strip()
            if not message:
                break
            try:
                run = workflow_message(
                    workflow=workflow, session_id=session, text=message, created_by=user
                )
            except ApplicationError as exc:
                raise CommandError(str(exc)) from None
            self.reply(run.job, options["timeout"], workflow=True)

    def prompt(self) -> str:
        try:
            return input("> ") + "\n"
        except EOFError:
            return ""

    def reply(self, job: Job, timeout: float, *, workflow: bool = False) -> None:
        """Print the streamed text (a workflow's reply is its output, printed at its end);
        say so when something waits for approval."""
        shown: set[int] = set()
        streamed = ""
        with contextlib.suppress(TimeoutError):  # said below: the job goes on without us
            for event in follow(str(job.pk), timeout=timeout):
                if event["kind"] == "llm.delta":
                    streamed += event["data"]["text"]
                    self.stdout.write(event["data"]["text"], ending="")
                    self.stdout.flush()
                elif (
                    event["kind"] == "checkpoint.opened"
                    and event["data"]["checkpoint_id"] not in shown
                ):
                    shown.add(event["data"]["checkpoint_id"])
                    self.stdout.write(
                        f"\n[waiting for approval: {event['data']['title']} — "
                        f"checkpoint {event['data']['checkpoint_id']}]"
                    )
        job.refresh_from_db()
        if job.status == JobStatus.SUCCEEDED:
            output = (job.result or {}).get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            if workflow and text.strip() != streamed.strip():  # not what streamed already
                self.stdout.write(("\n" if streamed else "") + text, ending="")
            self.stdout.write("")
        elif job.status == JobStatus.WAITING:
            # A workflow's approvals may wait in its branches (child jobs).
            pending = (
                run_pending_checkpoints(job.pk)
                if workflow
                else Checkpoint.objects.filter(job=job, status=CheckpointStatus.PENDING)
            )
            ids = ", ".join(str(c.pk) for c in pending)
            self.stdout.write(
                f"\n[still waiting for checkpoint {ids}; the reply will be in job {job.pk}]"
            )
        else:
            self.stderr.write(f"\n[job {job.pk} {job.status}: {job.error_message}]")

    def find_agent(self, given: str, org: str | None) -> Agent:
        agents = Agent.objects.alive()
        if org:
            agents = agents.filter(organization__slug=org)
        found = list(agents.filter(pk=int(given)) if given.isdigit() else agents.filter(name=given))
        if not found:
            raise CommandError(f"no agent {given!r}" + (f" in {org}" if org else ""))
        if len(found) > 1:
            raise CommandError(f"{len(found)} agents are named {given!r}; pass --org SLUG")
        return found[0]
