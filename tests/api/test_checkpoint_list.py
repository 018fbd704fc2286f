"""GET /api/v1/checkpoints/: rows read as values, without payloads, in few queries, and
the same as the serializer that documents them in the schema."""

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from accounts.models import Organization, Role
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus, Verdict
from checkpoints.serializers import CheckpointSummarySerializer
from jobs.models import Job, JobStatus
from tests.factories import client_for, make_user

pytestmark = pytest.mark.django_db


def checkpoint(acme: Organization, title: str, **fields) -> Checkpoint:
    job = Job.objects.create(
        job_type="code-generation",
        organization=acme,
        status=JobStatus.WAITING,
        input={"prompt": title},
    )
    return Checkpoint.objects.create(
        job=job,
        organization=acme,
        key="write-files",
        title=title,
        payload={"files": [{"path": "a.py", "content": "x = 1\n"}]},
        payload_schema={"type": "object"},
        **fields,
    )


@pytest.fixture
def queue(acme: Organization) -> list[Checkpoint]:
    """A pending one, a pending one with one of its two approvals, an approved one
    (with an edit), a rejected one, an expiring one."""
    ann, bob = make_user("ann"), make_user("bob")
    plain = checkpoint(acme, "plain")
    halfway = checkpoint(acme, "halfway", required_approvals=2, description="two needed")
    CheckpointDecision.objects.create(
        checkpoint=halfway, user=ann, verdict=Verdict.APPROVED, reason="fine by me"
    )
    approved = checkpoint(acme, "approved", status=CheckpointStatus.APPROVED)
    CheckpointDecision.objects.create(
        checkpoint=approved, user=bob, verdict=Verdict.APPROVED, payload={"files": []}
    )
    rejected = checkpoint(acme, "rejected", status=CheckpointStatus.REJECTED)
    CheckpointDecision.objects.create(
        checkpoint=rejected, user=None, verdict=Verdict.REJECTED, reason="timed out"
    )
    Checkpoint.objects.filter(pk__in=[approved.pk, rejected.pk]).update(
        decided_at=approved.opened_at
    )
    expiring = checkpoint(acme, "expiring", expires_at=plain.opened_at)
    return [plain, halfway, approved, rejected, expiring]


@pytest.fixture
def approver(acme: Organization) -> APIClient:
    return client_for("april", acme, Role.APPROVER)


def as_json(data: object) -> Any:
    return json.loads(JSONRenderer().render(data))


def test_rows_are_what_the_list_serializer_documents(approver, queue):
    listed = approver.get("/api/v1/checkpoints/").json()["results"]

    reference = CheckpointSummarySerializer(
        Checkpoint.objects.filter(pk__in=[c.pk for c in queue]).select_related("job"), many=True
    ).data
    by_id = {row["id"]: row for row in as_json(reference)}
    assert len(listed) == len(queue)
    for row in listed:
        assert row == by_id[row["id"]]
        assert list(row) == list(by_id[row["id"]])  # the same keys, in the same order
    halfway = next(row for row in listed if row["title"] == "halfway")
    assert [(d["user"], d["verdict"]) for d in halfway["decisions"]] == [("ann", "approved")]


def test_a_list_carries_no_payloads_and_the_detail_does(approver, queue):
    row = approver.get("/api/v1/checkpoints/").json()["results"][0]
    assert not {"payload", "payload_schema", "input_schema"} & set(row)
    assert all("payload" not in d for r in [row] for d in r["decisions"])

    detail = approver.get(f"/api/v1/checkpoints/{row['id']}/").json()
    assert detail["payload"] == {"files": [{"path": "a.py", "content": "x = 1\n"}]}
    assert detail["payload_schema"] == {"type": "object"}


def test_the_pending_queue_is_two_queries_count_and_rows(approver, queue):
    Checkpoint.objects.filter(title="halfway").update(status=CheckpointStatus.APPROVED)
    with CaptureQueriesContext(connection) as first:
        approver.get("/api/v1/checkpoints/")

    with CaptureQueriesContext(connection) as pending:
        response = approver.get("/api/v1/checkpoints/", {"status": "pending"})
    with CaptureQueriesContext(connection) as everything:
        approver.get("/api/v1/checkpoints/")

    # the token is read once, with its user, membership and organization, and its look-up
    # is reused for a few seconds (COUNTERSIGN_TOKEN_CACHE_SECONDS)
    assert "accounts_membership" in first.captured_queries[0]["sql"]
    # then one query counts, one reads the rows; a page where no checkpoint can have a
    # decision asks for none
    assert response.json()["count"] == 2
    assert len(pending.captured_queries) == 2, [q["sql"] for q in pending.captured_queries]
    sqls = [q["sql"] for q in pending.captured_queries]
    assert "COUNT(*)" in sqls[0]
    assert "agents_job" not in sqls[0]  # the count reads the checkpoints' index alone
    assert '"payload"' not in sqls[1]
    # decided ones and the halfway one: their decisions, in one query more
    assert len(everything.captured_queries) == 3


def test_filters_ordering_and_pages_still_apply(approver, queue):
    pending = approver.get("/api/v1/checkpoints/", {"status": "pending"}).json()
    assert [r["title"] for r in pending["results"]] == ["plain", "halfway", "expiring"]

    newest = approver.get("/api/v1/checkpoints/", {"ordering": "-opened_at"}).json()
    assert [r["title"] for r in newest["results"]][0] == "expiring"

    searched = approver.get("/api/v1/checkpoints/", {"search": "halfway"}).json()
    assert [r["title"] for r in searched["results"]] == ["halfway"]

    by_type = approver.get("/api/v1/checkpoints/", {"job_type": "code-generation"}).json()
    assert by_type["count"] == len(queue)
    assert by_type["next"] is None and by_type["previous"] is None


def test_an_approval_answers_with_the_whole_checkpoint(approver, queue, acme):
    plain = queue[0]

    response = approver.post(f"/api/v1/checkpoints/{plain.pk}/approve/", {}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["checkpoint"]["status"] == "approved"
    assert body["checkpoint"]["payload"] == plain.payload
    assert body["checkpoint"]["job_type"] == "code-generation"
    assert [d["user"] for d in body["checkpoint"]["decisions"]] == ["april"]


def test_a_decision_reads_nothing_after_its_commit(approver, queue):
    halfway = queue[1]  # ann approved already; april's approval settles it

    with CaptureQueriesContext(connection) as captured:
        response = approver.post(f"/api/v1/checkpoints/{halfway.pk}/approve/", {}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()["checkpoint"]
    assert body["status"] == "approved" and body["decided_at"] is not None
    assert [(d["user"], d["verdict"]) for d in body["decisions"]] == [
        ("ann", "approved"),
        ("april", "approved"),
    ]
    assert body["decisions"][0]["reason"] == "fine by me"
    sqls = [q["sql"] for q in captured.captured_queries]
    # the decisions are read once, under the lock, and the answer is built from them
    assert sum('FROM "checkpoints_checkpointdecision"' in sql for sql in sqls) == 1
    # (the test's transaction makes the decision's a savepoint)
    assert sqls[-1].startswith("RELEASE SAVEPOINT"), sqls


def test_query_parameters_filter_lists_not_one_checkpoint(approver, queue):
    # The list's filters are not built for a detail or a decision (a form per request).
    plain = queue[0]
    detail = approver.get(f"/api/v1/checkpoints/{plain.pk}/", {"status": "approved"})
    assert detail.status_code == 200 and detail.json()["status"] == "pending"
    listed = approver.get("/api/v1/checkpoints/", {"status": "approved"}).json()["results"]
    assert plain.pk not in [row["id"] for row in listed]
