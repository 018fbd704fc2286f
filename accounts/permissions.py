"""DRF permission: the caller's role must grant what the action needs; the typed user."""

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Organization
from accounts.roles import Capability, can, organization_of


class HasCapability(BasePermission):
    """Views name what each action needs in `capabilities` ({action: Capability});
    anything unnamed needs VIEW. Object access is scoped by the view's queryset."""

    message = "Your role in this organization does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = getattr(view, "capabilities", {}).get(view.action, Capability.VIEW)
        return bool(request.user and request.user.is_authenticated and can(request.user, needed))


def request_user(request: HttpRequest) -> User:
    """The signed-in user of a request, typed. Views behind `HasCapability` (or the
    admin's login) only run for one; anything else is refused as unauthenticated."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise NotAuthenticated()
    return user


def request_organization(request: HttpRequest) -> Organization:
    """The organization of a request's user; refused if they belong to none."""
    organization = organization_of(request_user(request))
    if organization is None:
        raise PermissionDenied("you belong to no organization")
    return organization
