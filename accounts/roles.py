"""What each role may do. One table, read by the API, the admin and the services."""

from enum import StrEnum
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet

from accounts.models import Membership, Organization, Role

_M = TypeVar("_M", bound=Model)


class Capability(StrEnum):
    VIEW = "view"
    OPERATE = "operate"  # create, cancel, retry jobs; run agents
    DECIDE = "decide"  # approve, reject, answer checkpoints
    ADMINISTER = "administer"  # agents, workflows, members, workers


GRANTS: dict[Role, frozenset[Capability]] = {
    Role.VIEWER: frozenset({Capability.VIEW}),
    Role.OPERATOR: frozenset({Capability.VIEW, Capability.OPERATE}),
    Role.APPROVER: frozenset({Capability.VIEW, Capability.DECIDE}),
    Role.ADMIN: frozenset(Capability),
}


def membership_of(user: AbstractBaseUser | AnonymousUser | None) -> Membership | None:
    """The user's membership, read once per user object (i.e. once per request)."""
    if user is None or not user.is_authenticated:
        return None
    cached = getattr(user, "_countersign_membership", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    membership = Membership.objects.select_related("organization").filter(user_id=user.pk).first()
    user._countersign_membership = membership  # type: ignore[attr-defined]
    return membership


_UNSET = object()


def remember_membership(
    user: AbstractBaseUser | AnonymousUser, membership: Membership | None
) -> None:
    """Give `membership_of` the user's membership (or None), read along with the user."""
    user._countersign_membership = membership  # type: ignore[union-attr]


def organization_of(user: AbstractBaseUser | AnonymousUser | None) -> Organization | None:
    membership = membership_of(user)
    return membership.organization if membership else None


def can(
    user: AbstractBaseUser | AnonymousUser | None,
    capability: Capability,
    organization_id: int | None = None,
) -> bool:
    """Does the user's role grant `capability` (in `organization_id`, when given)?"""
    membership = membership_of(user)
    if membership is None:
        return False
    if organization_id is not None and membership.organization_id != organization_id:
        return False
    return capability in GRANTS[Role(membership.role)]


def visible_to(
    queryset: QuerySet[_M], user: AbstractBaseUser | AnonymousUser, field: str = "organization"
) -> QuerySet[_M]:
    """The admin's scoping: superusers see every organization's rows, members their
    own organization's, anyone else nothing."""
    if user.is_superuser:  # type: ignore[union-attr]
        return queryset
    organization = organization_of(user)
    return queryset.filter(**{field: organization}) if organization else queryset.none()
