from django.contrib.auth.models import Permission, User


def make_user(username: str, *, approver: bool = False) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if approver:
        user.user_permissions.add(Permission.objects.get(codename="decide_checkpoint"))
        user = User.objects.get(pk=user.pk)  # drop the permission cache
    return user
