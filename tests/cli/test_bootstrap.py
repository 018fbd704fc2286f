"""`manage.py bootstrap`: groups always, a local superuser only in DEBUG."""

import pytest
from django.contrib.auth.models import Group, User

pytestmark = pytest.mark.django_db


def permissions_of(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}


def test_creates_the_groups_once(cli, settings):
    settings.DEBUG = False

    first = cli("bootstrap")
    second = cli.json("bootstrap")

    assert "group approvers: created" in first and "group operators: created" in first
    assert second["groups"]["approvers"] == {"created": False, "permissions_added": []}
    assert Group.objects.filter(name__in=["approvers", "operators"]).count() == 2
    assert "checkpoints.decide_checkpoint" in permissions_of("approvers")
    assert {"jobs.add_job", "jobs.change_job", "jobs.view_job"} <= permissions_of("operators")


def test_never_creates_users_when_debug_is_off(cli, settings):
    settings.DEBUG = False

    data = cli.json("bootstrap")

    assert data["superuser_created"] is None
    assert not User.objects.exists()


def test_creates_the_local_admin_once_in_debug(cli, settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setenv("COUNTERSIGN_ADMIN_PASSWORD", "s3cret-local")

    first = cli("bootstrap")
    second = cli("bootstrap")

    assert (
        "Created local superuser admin / s3cret-local (DEBUG only; set "
        "COUNTERSIGN_ADMIN_PASSWORD to choose)"
    ) in first
    assert "Created local superuser" not in second
    admin = User.objects.get()
    assert admin.username == "admin" and admin.is_superuser and admin.check_password("s3cret-local")
    assert admin.groups.filter(name="approvers").exists()
    # ...and an admin of the default organization, so the API shows it that organization.
    assert (admin.membership.organization.slug, admin.membership.role) == ("default", "admin")


def test_default_password_is_admin(cli, settings):
    settings.DEBUG = True

    data = cli.json("bootstrap")

    assert data["superuser_created"] == {"username": "admin", "password": "admin"}
    assert User.objects.get(username="admin").check_password("admin")


def test_an_existing_superuser_means_no_admin(cli, settings):
    settings.DEBUG = True
    User.objects.create_superuser("root", "root@example.com", "pw")

    assert "Created local superuser" not in cli("bootstrap")
    assert list(User.objects.values_list("username", flat=True)) == ["root"]


def test_restores_a_permission_removed_from_a_group(cli, settings):
    settings.DEBUG = False
    cli("bootstrap")
    Group.objects.get(name="approvers").permissions.clear()

    out = cli("bootstrap")

    assert "group approvers: updated (+checkpoints.decide_checkpoint" in out
    assert "checkpoints.decide_checkpoint" in permissions_of("approvers")
