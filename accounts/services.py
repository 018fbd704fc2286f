"""API tokens (issued once in the clear, stored as a digest, revocable), members,
and the default organization."""

import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Model
from django.utils import timezone

from accounts.models import ApiToken, Membership, Organization, Role
from accounts.roles import remember_membership
from core.errors import ApplicationError

TOKEN_PREFIX = "cs_"
M = TypeVar("M", bound=Model)
LAST_USED_PRECISION = timedelta(minutes=1)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def token_issue(*, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token; the returned string is the only time it is seen in the clear."""
    if not name or not name.strip():
        raise ValueError("a token needs a name")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100], prefix=raw[: len(TOKEN_PREFIX) + 6], digest=_digest(raw)
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# What a token's look-up found, by digest: until when (time.monotonic()) it may be used,
# and the values of the user's, membership's and organization's columns. Each request
# gets instances of its own, built from these values: up to a few seconds old, so they
# are for reading (a `save()` of the whole user would write old values back).
_Found = tuple[float, list[Any], list[Any] | None, list[Any] | None]
_found: dict[str, _Found] = {}
_FOUND_MAX = 10_000  # distinct tokens remembered at most; past it, start over
# Counts the times everything was forgotten: a look-up that was reading while it
# happened does not keep what it read.
_forgotten = [0]


def forget_tokens() -> None:
    """Read every token again on its next use, in this process (others within
    COUNTERSIGN_TOKEN_CACHE_SECONDS): a token, user, membership or organization was
    saved or deleted (accounts.apps), now and again when the transaction commits, so a
    request that read the old rows meanwhile does not keep them."""
    _forget()
    transaction.on_commit(_forget)


def _forget() -> None:
    _forgotten[0] += 1
    _found.clear()


def token_authenticate(raw: str) -> User | None:
    """The active user behind a token, or None. Looked up by digest, so the
    comparison never touches the secret itself. What it finds is reused for
    COUNTERSIGN_TOKEN_CACHE_SECONDS: the look-up costs more than many requests."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(raw)
    found = _found.get(digest)
    if found is None or found[0] < time.monotonic():
        found = _look_up(digest)
        if found is None:
            return None
    user = _instance(User, found[1])
    membership = None
    if found[2] is not None and found[3] is not None:
        membership = _instance(Membership, found[2])
        membership.organization = _instance(Organization, found[3])
    remember_membership(user, membership)
    return user


def _look_up(digest: str) -> _Found | None:
    generation = _forgotten[0]
    # The user's membership and organization come along: every API request needs them
    # (roles.membership_of), and this saves it a query.
    token = (
        ApiToken.objects.select_related("user__membership__organization")
        .filter(digest=digest, revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    try:
        membership: Membership | None = token.user.membership
    except Membership.DoesNotExist:
        membership = None
    now = timezone.now()
    # A write per request would cost more than the request; a minute's precision will do.
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    found = (
        time.monotonic() + settings.COUNTERSIGN_TOKEN_CACHE_SECONDS,
        _values(token.user),
        _values(membership) if membership else None,
        _values(membership.organization) if membership else None,
    )
    if settings.COUNTERSIGN_TOKEN_CACHE_SECONDS > 0 and generation == _forgotten[0]:
        if len(_found) >= _FOUND_MAX:
            _found.clear()
        _found[digest] = found
    return found


def _values(instance: Model) -> list[Any]:
    return [getattr(instance, f.attname) for f in instance._meta.concrete_fields]


def _instance(model: type[M], values: list[Any]) -> M:
    """A model instance as if read from the database, from what `_values` kept of one."""
    names = [f.attname for f in model._meta.concrete_fields]
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


def default_organization(slug: str | None = None) -> Organization:
    """The organization jobs join when none is named (COUNTERSIGN_DEFAULT_ORGANIZATION),
    or the one with `slug`; the default one is created on first use."""
    if slug is not None:
        try:
            return Organization.objects.get(slug=slug)
        except Organization.DoesNotExist:
            raise ValueError(f"no organization with slug {slug!r}") from None
    default = settings.COUNTERSIGN_DEFAULT_ORGANIZATION
    organization, _ = Organization.objects.get_or_create(
        slug=default, defaults={"name": default.replace("-", " ").title()}
    )
    return organization


class MembershipError(ApplicationError):
    """A membership change that is not allowed; the message says why."""

    def __init__(self, message: str, field: str = "non_field_errors") -> None:
        super().__init__(message, {field: [message]})


def _lock(membership: Membership) -> Membership:
    """Lock the organization first: two admins demoting each other at once must not
    both see the other as the remaining admin."""
    Organization.objects.select_for_update().only("pk").get(pk=membership.organization_id)
    return Membership.objects.select_for_update().get(pk=membership.pk)


def other_admins(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    )


@transaction.atomic
def member_add(
    *,
    organization: Organization,
    username: str,
    role: str,
    email: str = "",
    password: str | None = None,
) -> Membership:
    """A new person in the organization: a new staff user (so the admin's review pages
    open to them) with this role. Existing users are not adopted: another organization
    must not learn of, or take over, their accounts."""
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise MembershipError(f"the username {username!r} is taken", "username")
    user = User(username=username, email=email, is_staff=True)
    if password:
        password_validation.validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()  # until they are given a password or a token
    user.save()
    return Membership.objects.create(user=user, organization=organization, role=role)


@transaction.atomic
def member_change_role(*, membership: Membership, role: str) -> Membership:
    membership = _lock(membership)
    if membership.role == Role.ADMIN and role != Role.ADMIN and not other_admins(membership):
        raise MembershipError("an organization needs at least one admin", "role")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    """Take the person out of the organization and revoke their API tokens."""
    membership = _lock(membership)
    if membership.role == Role.ADMIN and not other_admins(membership):
        raise MembershipError("an organization needs at least one admin")
    ApiToken.objects.filter(user_id=membership.user_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    membership.delete()
