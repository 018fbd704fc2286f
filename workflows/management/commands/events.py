"""`manage.py events send NAME --data JSON [--key KEY]` and `events list`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.cli import command_organization
from core.cli import find_user, fmt_time, parse_json, shorten, table, to_json
from core.errors import ApplicationError
from workflows.events import event_send
from workflows.models import Event


class Command(BaseCommand):
    help = (
        "Send an event (waking the runs that wait for it, starting the workflows it "
        "triggers) or list recent ones."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--org",
            metavar="SLUG",
            help="the organization (default: $COUNTERSIGN_DEFAULT_ORGANIZATION)",
        )
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        send = actions.add_parser("send", help="send an event")
        send.add_argument("name")
        send.add_argument("--data", default="{}", help="JSON, or @file.json")
        send.add_argument("--key", default="", help="idempotency key: sent once per key")
        send.add_argument("--source", default="cli")
        send.add_argument(
            "--as", dest="as_user", metavar="USER", help="who sends it (default: $COUNTERSIGN_USER)"
        )
        send.add_argument("--json", action="store_true")
        listing = actions.add_parser("list", help="recent events, newest first")
        listing.add_argument("--name")
        listing.add_argument("--limit", type=int, default=20)
        listing.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = find_user(options.get("as_user"))
        organization = command_organization(options["org"], user)
        if options["action"] == "send":
            try:
                event, created = event_send(
                    organization=organization,
                    name=options["name"],
                    data=parse_json(options["data"], "--data"),
                    idempotency_key=options["key"],
                    source=options["source"],
                    created_by=user,
                )
            except ApplicationError as exc:
                raise CommandError(str(exc)) from None
            if options["json"]:
                self.stdout.write(to_json({**event.payload(), "created": created}))
            else:
                self.stdout.write(
                    str(event.pk)
                    if created
                    else f"{event.pk} (sent before with key {options['key']!r})"
                )
            return
        events = Event.objects.filter(organization=organization).order_by("-received_at")
        if options["name"]:
            events = events.filter(name=options["name"])
        rows = list(events[: max(options["limit"], 1)])
        if options["json"]:
            self.stdout.write(to_json([e.payload() for e in rows]))
            return
        self.stdout.write(
            table(
                ["ID", "NAME", "RECEIVED", "SOURCE", "DATA"],
                [
                    [
                        e.pk,
                        e.name,
                        fmt_time(e.received_at),
                        e.source,
                        shorten(to_json(e.data, pretty=False), 60),
                    ]
                    for e in rows
                ],
            )
        )
