from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from accounts.models import Membership, Organization, Role
from accounts.services import token_issue


def make_user(username: str, *, approver: bool = False) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if approver:
        user.user_permissions.add(Permission.objects.get(codename="decide_checkpoint"))
        user = User.objects.get(pk=user.pk)  # drop the permission cache
    return user


def client_for(username: str, organization: Organization | None, role: Role) -> APIClient:
    """An API client holding a fresh token of a new user with `role` in `organization`."""
    user = make_user(username)
    if organization is not None:
        Membership.objects.create(user=user, organization=organization, role=role)
    _, raw = token_issue(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client
