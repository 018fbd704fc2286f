"""API tokens (hashed, shown once, revocable), roles, and organization-aware decisions."""

import hashlib

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIRequestFactory

from accounts.authentication import ApiTokenAuthentication
from accounts.models import ApiToken, Membership, Organization, Role
from accounts.roles import Capability, can
from accounts.services import token_authenticate, token_issue, token_revoke
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def member(username: str, organization: Organization, role: Role):
    user = make_user(username)
    Membership.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def acme() -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def globex() -> Organization:
    return Organization.objects.create(name="Globex", slug="globex")


def test_a_token_is_stored_as_a_digest_and_shown_once():
    user = make_user("alice")
    token, raw = token_issue(user=user, name="ci")

    assert raw.startswith("cs_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {stored.prefix, stored.digest, stored.name}
    assert token_authenticate(raw) == user
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_a_revoked_or_wrong_token_authenticates_nobody():
    user = make_user("alice")
    token, raw = token_issue(user=user, name="ci")
    assert token_authenticate(raw + "x") is None
    assert token_authenticate("not-a-token") is None
    token_revoke(token=token)
    assert token_authenticate(raw) is None


def test_drf_authentication_reads_bearer_tokens():
    user = make_user("alice")
    _, raw = token_issue(user=user, name="ci")
    auth = ApiTokenAuthentication()
    factory = APIRequestFactory()

    assert auth.authenticate(factory.get("/", HTTP_AUTHORIZATION=f"Bearer {raw}")) == (user, None)
    assert auth.authenticate(factory.get("/")) is None
    with pytest.raises(AuthenticationFailed):
        auth.authenticate(factory.get("/", HTTP_AUTHORIZATION="Bearer cs_wrong"))


@pytest.mark.parametrize(
    ("role", "granted"),
    [
        (Role.VIEWER, {Capability.VIEW}),
        (Role.OPERATOR, {Capability.VIEW, Capability.OPERATE}),
        (Role.APPROVER, {Capability.VIEW, Capability.DECIDE}),
        (Role.ADMIN, set(Capability)),
    ],
)
def test_what_each_role_may_do(acme, globex, role, granted):
    user = member("someone", acme, role)
    assert {c for c in Capability if can(user, c, acme.pk)} == granted
    assert not any(can(user, c, globex.pk) for c in Capability)


def paused_in(organization: Organization, creator) -> Checkpoint:
    job = job_create(job_type="test-approval", organization=organization, created_by=creator)
    assert run_job(str(job.pk)) == JobStatus.WAITING
    return Checkpoint.objects.get(job=job)


def test_an_organizations_approver_decides_its_checkpoints(acme, globex):
    creator = member("creator", acme, Role.OPERATOR)
    checkpoint = paused_in(acme, creator)

    with pytest.raises(PermissionDenied, match="another organization"):
        services.checkpoint_approve(
            checkpoint=checkpoint, user=member("outsider", globex, Role.APPROVER)
        )
    with pytest.raises(PermissionDenied, match="approver role"):
        services.checkpoint_approve(checkpoint=checkpoint, user=member("viewer", acme, Role.VIEWER))
    services.checkpoint_approve(checkpoint=checkpoint, user=member("approver", acme, Role.APPROVER))


def test_the_four_eyes_rule_can_be_relaxed_per_organization(acme):
    creator = member("creator", acme, Role.ADMIN)
    checkpoint = paused_in(acme, creator)
    with pytest.raises(PermissionDenied, match="four-eyes"):
        services.checkpoint_approve(checkpoint=checkpoint, user=creator)

    Organization.objects.filter(pk=acme.pk).update(allow_self_approval=True)
    services.checkpoint_approve(checkpoint=checkpoint, user=creator)
