"""`manage.py workers status|pause|resume|grow|shrink`: the Celery workers, as in
/api/v1/workers/ (pause = stop, resume = start)."""

from collections.abc import Callable, Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.cli import table, to_json
from core.errors import ApplicationError
from jobs import workers

NO_WORKERS = "no worker answered (is one running, on this broker?)"


def worker_rows(found: Sequence[dict[str, Any]]) -> str:
    return table(
        ["NAME", "CONSUMING", "CONCURRENCY", "ACTIVE", "PROCESSED"],
        [
            [
                w["name"],
                "yes" if w["consuming"] else "no",
                "-" if w["concurrency"] is None else w["concurrency"],
                w["active"],
                w["processed"],
            ]
            for w in found
        ],
    )


def not_found(name: str) -> CommandError:
    answered = [w["name"] for w in workers.workers_status()]
    if not answered:
        return CommandError(f"no worker named {name!r}: {NO_WORKERS}")
    return CommandError(f"no worker named {name!r} answered; these did: {', '.join(answered)}")


class Command(BaseCommand):
    help = (
        "Show Celery workers; pause or resume their taking of jobs; grow or shrink "
        "their process pools."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        status = actions.add_parser("status", help="every worker that answers, or one")
        status.add_argument("name", nargs="?", metavar="NAME", help="a worker, e.g. w1@host")
        status.add_argument("--json", action="store_true")

        for action, text in (
            ("pause", "stop taking new jobs (running ones finish)"),
            ("resume", "take new jobs again"),
        ):
            sub = actions.add_parser(action, help=text)
            which = sub.add_mutually_exclusive_group(required=True)
            which.add_argument("name", nargs="?", metavar="NAME", help="a worker, e.g. w1@host")
            which.add_argument("--all", action="store_true", help="every worker that answers")
            sub.add_argument("--json", action="store_true")

        for action, text in (
            ("grow", "add N processes to a worker's pool"),
            ("shrink", "stop N idle processes of a worker's pool (at least one stays)"),
        ):
            sub = actions.add_parser(action, help=text)
            sub.add_argument("name", metavar="NAME", help="a worker, e.g. w1@host")
            sub.add_argument("n", type=int, metavar="N", help="how many processes (>= 1)")
            sub.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    # --- status -------------------------------------------------------------------------
    def do_status(self, options: dict[str, Any]) -> None:
        if options["name"]:
            self.show(self.call(workers.worker_status, options["name"]), options)
            return
        found = workers.workers_status()
        if options["json"]:
            self.stdout.write(to_json(found))
        elif not found:
            self.stdout.write(NO_WORKERS)
        else:
            self.stdout.write(worker_rows(found))

    # --- pause / resume -----------------------------------------------------------------
    def do_pause(self, options: dict[str, Any]) -> None:
        self.switch(options, workers.worker_pause, "paused: running jobs finish, no new ones")

    def do_resume(self, options: dict[str, Any]) -> None:
        self.switch(options, workers.worker_resume, "taking jobs")

    def switch(
        self, options: dict[str, Any], fn: Callable[[str], dict[str, Any]], done: str
    ) -> None:
        if not options["all"]:
            worker = self.call(fn, options["name"])
            if not options["json"]:
                self.stdout.write(self.style.SUCCESS(f"{worker['name']} {done}"))
            self.show(worker, options)
            return
        names = [w["name"] for w in workers.workers_status()]
        if not names:
            raise CommandError(NO_WORKERS)
        changed = [self.call(fn, name) for name in names]
        if options["json"]:
            self.stdout.write(to_json(changed))
            return
        self.stdout.write(self.style.SUCCESS(f"{len(changed)} worker(s) {done}"))
        self.stdout.write(worker_rows(changed))

    # --- grow / shrink ------------------------------------------------------------------
    def do_grow(self, options: dict[str, Any]) -> None:
        self.resize(options, workers.worker_grow)

    def do_shrink(self, options: dict[str, Any]) -> None:
        self.resize(options, workers.worker_shrink)

    def resize(self, options: dict[str, Any], fn: Callable[[str, int], dict[str, Any]]) -> None:
        if options["n"] < 1:
            raise CommandError("N must be at least 1")
        worker = self.call(fn, options["name"], options["n"])
        if not options["json"]:
            self.stdout.write(
                self.style.SUCCESS(f"{worker['name']} now has {worker['concurrency']} process(es)")
            )
        self.show(worker, options)

    # --- helpers ------------------------------------------------------------------------
    def call(self, fn: Callable[..., dict[str, Any]], name: str, *args: Any) -> dict[str, Any]:
        try:
            return fn(name, *args)
        except workers.WorkerNotFound:
            raise not_found(name) from None
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None

    def show(self, worker: dict[str, Any], options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(to_json(worker))
        else:
            self.stdout.write(worker_rows([worker]))
