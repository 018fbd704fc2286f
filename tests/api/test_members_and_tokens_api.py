"""/api/v1/tokens/ and /api/v1/members/: self-service tokens, and members managed by
their organization's admins, never reaching into another organization."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.models import ApiToken, Membership, Organization, Role
from tests.factories import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def admin(acme) -> APIClient:
    return client_for("ada", acme, Role.ADMIN)


@pytest.fixture
def viewer(acme) -> APIClient:
    return client_for("vera", acme, Role.VIEWER)


@pytest.fixture
def outsider() -> APIClient:
    return client_for("gus", Organization.objects.create(name="Globex", slug="globex"), Role.ADMIN)


def bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_is_shown_once_listed_without_it_and_revoked(viewer):
    issued = viewer.post("/api/v1/tokens/", {"name": "laptop"}, format="json")
    assert issued.status_code == 201
    raw = issued.json()["token"]
    assert raw.startswith(issued.json()["prefix"])
    assert bearer(raw).get("/api/v1/jobs/").status_code == 200

    listed = viewer.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"test", "laptop"}
    assert all("token" not in t and "digest" not in t for t in listed)
    assert raw not in str(listed)
    detail = viewer.get(f"/api/v1/tokens/{issued.json()['id']}/").json()
    assert "token" not in detail

    assert viewer.delete(f"/api/v1/tokens/{issued.json()['id']}/").status_code == 204
    assert bearer(raw).get("/api/v1/jobs/").status_code == 401
    assert ApiToken.objects.get(pk=issued.json()["id"]).revoked_at is not None


def test_a_token_needs_a_name_and_other_peoples_tokens_are_not_found(viewer, admin):
    response = viewer.post("/api/v1/tokens/", {}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]

    others = ApiToken.objects.get(user__username="ada")
    assert viewer.get(f"/api/v1/tokens/{others.pk}/").status_code == 404
    assert viewer.delete(f"/api/v1/tokens/{others.pk}/").status_code == 404
    assert ApiToken.objects.get(pk=others.pk).revoked_at is None


def test_anonymous_callers_get_no_tokens_or_members():
    assert APIClient().get("/api/v1/tokens/").status_code == 401
    assert APIClient().post("/api/v1/members/", {}, format="json").status_code == 401


def test_members_are_listed_to_the_organization_only(admin, viewer, outsider):
    names = [m["username"] for m in viewer.get("/api/v1/members/").json()["results"]]
    assert names == ["ada", "vera"]
    gus = Membership.objects.get(user__username="gus")
    assert viewer.get(f"/api/v1/members/{gus.pk}/").status_code == 404
    assert (
        admin.patch(f"/api/v1/members/{gus.pk}/", {"role": "viewer"}, format="json").status_code
        == 404
    )
    assert admin.delete(f"/api/v1/members/{gus.pk}/").status_code == 404
    assert Membership.objects.get(pk=gus.pk).role == Role.ADMIN


def test_an_admin_adds_a_member_who_can_then_use_the_admin_site(admin, acme):
    response = admin.post(
        "/api/v1/members/",
        {
            "username": "nina",
            "email": "nina@acme.test",
            "role": "approver",
            "password": "a-long-unusual-passphrase",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json() | {"id": 0, "created_at": ""} == {
        "id": 0,
        "username": "nina",
        "email": "nina@acme.test",
        "role": "approver",
        "created_at": "",
    }
    assert "password" not in response.json()
    nina = User.objects.get(username="nina")
    assert nina.is_staff and nina.check_password("a-long-unusual-passphrase")
    assert nina.membership.organization == acme
    # The role reaches the admin through the role backend: no permissions by hand.
    assert nina.has_perm("checkpoints.decide_checkpoint")
    assert not nina.has_perm("jobs.change_job")


def test_adding_a_member_is_validated(admin, outsider):
    taken = admin.post("/api/v1/members/", {"username": "ADA", "role": "viewer"}, format="json")
    assert taken.status_code == 400
    assert taken.json()["error"]["fields"]["username"] == ["This username is taken."]
    # a name taken in another organization: the same answer, and nothing more
    elsewhere = admin.post("/api/v1/members/", {"username": "GUS", "role": "viewer"}, format="json")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == taken.json()["error"]
    weak = admin.post(
        "/api/v1/members/", {"username": "nina", "role": "viewer", "password": "123"}, format="json"
    )
    assert weak.status_code == 400 and "password" in weak.json()["error"]["fields"]
    bad_role = admin.post("/api/v1/members/", {"username": "nina", "role": "owner"}, format="json")
    assert "role" in bad_role.json()["error"]["fields"]
    assert not User.objects.filter(username="nina").exists()


def test_only_admins_manage_members(viewer, acme):
    client_for("oscar", acme, Role.OPERATOR)
    oscar = Membership.objects.get(user__username="oscar")
    assert (
        viewer.post(
            "/api/v1/members/", {"username": "x", "role": "admin"}, format="json"
        ).status_code
        == 403
    )
    assert (
        viewer.patch(f"/api/v1/members/{oscar.pk}/", {"role": "admin"}, format="json").status_code
        == 403
    )
    assert viewer.delete(f"/api/v1/members/{oscar.pk}/").status_code == 403
    assert (
        viewer.put(f"/api/v1/members/{oscar.pk}/", {"role": "admin"}, format="json").status_code
        == 405
    )


def test_roles_change_but_the_last_admin_stays(admin):
    ada = Membership.objects.get(user__username="ada")
    demote = admin.patch(f"/api/v1/members/{ada.pk}/", {"role": "viewer"}, format="json")
    assert demote.status_code == 400
    assert demote.json()["error"]["fields"]["role"] == ["an organization needs at least one admin"]
    assert admin.delete(f"/api/v1/members/{ada.pk}/").status_code == 400

    created = admin.post(
        "/api/v1/members/", {"username": "bob", "role": "viewer"}, format="json"
    ).json()
    promoted = admin.patch(f"/api/v1/members/{created['id']}/", {"role": "admin"}, format="json")
    assert promoted.json()["role"] == "admin"
    assert (
        admin.patch(f"/api/v1/members/{ada.pk}/", {"role": "viewer"}, format="json").json()["role"]
        == "viewer"
    )


def test_removing_a_member_revokes_their_tokens(admin, viewer):
    vera = Membership.objects.get(user__username="vera")
    assert viewer.get("/api/v1/jobs/").status_code == 200

    assert admin.delete(f"/api/v1/members/{vera.pk}/").status_code == 204

    assert not Membership.objects.filter(pk=vera.pk).exists()
    assert viewer.get("/api/v1/jobs/").status_code == 401
    assert not ApiToken.objects.filter(user__username="vera", revoked_at__isnull=True).exists()


# --- the token look-up reused for COUNTERSIGN_TOKEN_CACHE_SECONDS ---------------------


def changed_elsewhere(sql: str, *params: str) -> None:
    """A change made by another process: a statement, which no model signal sees."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_a_change_in_this_process_applies_to_the_next_request(viewer):
    def add(username: str) -> int:
        body = {"username": username, "role": "viewer"}
        return viewer.post("/api/v1/members/", body, format="json").status_code

    assert add("newcomer") == 403  # a viewer adds nobody
    membership = Membership.objects.get(user__username="vera")
    membership.role = Role.ADMIN
    membership.save()  # the admin, a shell or a service: read again at once
    assert add("newcomer") == 201

    ApiToken.objects.get(user__username="vera").delete()
    assert viewer.get("/api/v1/members/").status_code == 401


def test_a_change_elsewhere_applies_within_the_cache_time(viewer, settings):
    from accounts.models import ApiToken
    from jobs.processes import poll_until

    settings.COUNTERSIGN_TOKEN_CACHE_SECONDS = 0.5
    assert viewer.get("/api/v1/tokens/").status_code == 200
    changed_elsewhere(
        f"UPDATE {ApiToken._meta.db_table} SET revoked_at = now() WHERE user_id = "
        f"(SELECT id FROM auth_user WHERE username = %s)",
        "vera",
    )
    assert viewer.get("/api/v1/tokens/").status_code == 200  # still what was found
    poll_until(
        lambda: viewer.get("/api/v1/tokens/").status_code == 401,
        timeout=5,
        what="the revoked token to be refused",
    )


def test_with_no_cache_time_every_request_reads_the_token(viewer, settings):
    settings.COUNTERSIGN_TOKEN_CACHE_SECONDS = 0
    assert viewer.get("/api/v1/tokens/").status_code == 200
    changed_elsewhere("UPDATE auth_user SET is_active = false WHERE username = %s", "vera")
    assert viewer.get("/api/v1/tokens/").status_code == 401


def test_each_request_gets_a_user_of_its_own():
    from accounts.models import Membership
    from accounts.roles import membership_of
    from accounts.services import token_authenticate, token_issue
    from tests.factories import make_user

    user = make_user("una")
    acme = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(user=user, organization=acme, role=Role.OPERATOR)
    raw = token_issue(user=user, name="t")[1]
    first, second = token_authenticate(raw), token_authenticate(raw)
    assert first is not None and second is not None and first is not second
    first.first_name = "changed by a request"
    assert second.first_name == "" and token_authenticate(raw).first_name == ""
    assert membership_of(second).organization.slug == "acme"
    assert membership_of(second).role == Role.OPERATOR


def test_a_look_up_that_raced_a_change_keeps_nothing(monkeypatch):
    """A change saved while a look-up was reading (its rows are then older than the
    change) must not be remembered: the next request reads the token again."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts import services
    from accounts.services import forget_tokens, token_authenticate, token_issue
    from tests.factories import make_user

    raw = token_issue(user=make_user("rita"), name="t")[1]
    values = services._values

    def changed_meanwhile(instance):
        forget_tokens()  # another thread saved a membership, say, just now
        return values(instance)

    monkeypatch.setattr(services, "_values", changed_meanwhile)
    assert token_authenticate(raw) is not None
    monkeypatch.setattr(services, "_values", values)
    with CaptureQueriesContext(connection) as again:
        assert token_authenticate(raw) is not None
    assert any("accounts_apitoken" in q["sql"] for q in again.captured_queries)
    with CaptureQueriesContext(connection) as cached:
        assert token_authenticate(raw) is not None
    assert cached.captured_queries == []
