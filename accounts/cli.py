"""What the management commands share about organizations."""

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from accounts.models import Organization
from accounts.roles import organization_of
from accounts.services import default_organization


def command_organization(slug: str | None, user: User | None) -> Organization:
    """The organization a command acts in: `--org SLUG`, else the user's, else the
    default one; a user may not name another organization than their own."""
    member_of = organization_of(user)
    if slug is None:
        return member_of or default_organization()
    try:
        organization = default_organization(slug)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if member_of is not None and member_of.pk != organization.pk:
        raise CommandError(f"{user} belongs to {member_of.slug}, not {slug}")
    return organization
