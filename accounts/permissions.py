"""DRF permission: the caller's role must grant what the action needs."""

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.roles import Capability, can


class HasCapability(BasePermission):
    """Views name what each action needs in `capabilities` ({action: Capability});
    anything unnamed needs VIEW. Object access is scoped by the view's queryset."""

    message = "Your role in this organization does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        needed = getattr(view, "capabilities", {}).get(view.action, Capability.VIEW)
        return bool(request.user and request.user.is_authenticated
                    and can(request.user, needed))
