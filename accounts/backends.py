"""Django permissions from organization roles, so the admin follows the same table
as the API: a viewer may view jobs and checkpoints, an approver also decide, an
operator also cancel and retry, an admin also manage members and tokens.

Objects are still scoped to the member's organization by each ModelAdmin's queryset;
this backend only says which pages and actions a role may use."""

from typing import Any

from django.contrib.auth.backends import BaseBackend

from accounts.models import Role
from accounts.roles import GRANTS, Capability, membership_of

PERMISSIONS: dict[Capability, frozenset[str]] = {
    Capability.VIEW: frozenset(
        {
            "jobs.view_job",
            "checkpoints.view_checkpoint",
            "accounts.view_membership",
            "agents.view_agent",
            "agents.view_message",
            "workflows.view_workflow",
            "workflows.view_workflowrun",
            "workflows.view_event",
        }
    ),
    # the cancel and retry actions of jobs and runs
    Capability.OPERATE: frozenset({"jobs.change_job", "workflows.change_workflowrun"}),
    Capability.DECIDE: frozenset({"checkpoints.decide_checkpoint"}),
    Capability.ADMINISTER: frozenset(
        {
            "accounts.add_membership",
            "accounts.change_membership",
            "accounts.delete_membership",
            "accounts.view_apitoken",
            "accounts.change_apitoken",
            "agents.add_agent",
            "agents.change_agent",
            "agents.delete_agent",
            "agents.view_memory",
            "agents.delete_memory",
            "workflows.add_workflow",
            "workflows.change_workflow",
        }
    ),
}


def role_permissions(role: Role) -> frozenset[str]:
    return frozenset().union(*(PERMISSIONS[capability] for capability in GRANTS[role]))


class RolePermissionBackend(BaseBackend):
    """Grants permissions only; authentication is left to the other backends."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or obj is not None:
            return set()
        membership = membership_of(user_obj)
        return set(role_permissions(Role(membership.role))) if membership else set()

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        return any(perm.startswith(app_label + ".") for perm in self.get_all_permissions(user_obj))
