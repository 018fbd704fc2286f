"""`manage.py bootstrap`: the groups and the default organization every install needs,
and a local admin in DEBUG.

Safe to run on every start: it only adds what is missing.
"""

import logging
import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Membership, Role
from accounts.services import default_organization
from core.cli import to_json

logger = logging.getLogger(__name__)

# Approvers decide checkpoints (and may view what they decide on in the admin);
# operators start and steer jobs.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    "approvers": [
        "checkpoints.decide_checkpoint",
        "checkpoints.view_checkpoint",
        "jobs.view_job",
    ],
    "operators": ["jobs.add_job", "jobs.change_job", "jobs.view_job"],
}
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD_ENV = "COUNTERSIGN_ADMIN_PASSWORD"


def find_permission(dotted: str) -> Permission:
    app_label, codename = dotted.split(".", 1)
    try:
        return Permission.objects.get(content_type__app_label=app_label, codename=codename)
    except Permission.DoesNotExist:
        raise CommandError(
            f"permission {dotted} does not exist; run `python manage.py migrate` first"
        ) from None


def ensure_group(name: str, permissions: list[str]) -> tuple[Group, bool, list[str]]:
    """The group with (at least) these permissions: (group, created, permissions added)."""
    group, created = Group.objects.get_or_create(name=name)
    have = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in group.permissions.select_related("content_type")
    }
    missing = [p for p in permissions if p not in have]
    group.permissions.add(*(find_permission(p) for p in missing))
    return group, created, missing


def ensure_local_admin(approvers: Group) -> dict[str, Any] | None:
    """In DEBUG only, and only when there is no superuser at all: admin / $PASSWORD."""
    user_model = get_user_model()
    if not settings.DEBUG or user_model.objects.filter(is_superuser=True).exists():
        return None
    if user_model.objects.filter(**{user_model.USERNAME_FIELD: ADMIN_USERNAME}).exists():
        logger.warning(
            "no superuser created: a user named %s exists but is not a superuser; "
            "make one with `python manage.py createsuperuser`",
            ADMIN_USERNAME,
        )
        return None
    password = os.environ.get(ADMIN_PASSWORD_ENV) or "admin"
    user = user_model.objects.create_superuser(ADMIN_USERNAME, "admin@localhost", password)
    user.groups.add(approvers)
    # An admin of the default organization, so that the API shows it that organization.
    Membership.objects.create(user=user, organization=default_organization(), role=Role.ADMIN)
    logger.info("created local superuser %s", ADMIN_USERNAME)
    return {"username": ADMIN_USERNAME, "password": password}


class Command(BaseCommand):
    help = (
        "Create the approvers and operators groups; in DEBUG, with no superuser yet, "
        f"create superuser {ADMIN_USERNAME!r} (password from ${ADMIN_PASSWORD_ENV}, "
        "default 'admin'). Idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            default_organization()
            groups = {name: ensure_group(name, perms) for name, perms in GROUP_PERMISSIONS.items()}
            admin = ensure_local_admin(groups["approvers"][0])
        if options["json"]:
            self.stdout.write(
                to_json(
                    {
                        "groups": {
                            name: {"created": created, "permissions_added": added}
                            for name, (_, created, added) in groups.items()
                        },
                        "superuser_created": admin,
                    }
                )
            )
            return
        for name, (_, created, added) in groups.items():
            state = "created" if created else ("updated" if added else "ok")
            extra = f" (+{', '.join(added)})" if added else ""
            self.stdout.write(f"group {name}: {state}{extra}")
        if admin:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Created local superuser {admin['username']} / {admin['password']} "
                    f"(DEBUG only; set {ADMIN_PASSWORD_ENV} to choose)"
                )
            )
