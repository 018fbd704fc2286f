"""Nodes that run child jobs (parallel branches, for_each waves, agents, sub-workflows)
and the hard cases other engines' users report, driven in this process."""

import pytest

from agents.services import agent_create
from checkpoints.services import checkpoint_approve, checkpoint_reject
from jobs.models import Job, JobStatus
from jobs.runtime.engine import run_job
from jobs.services import job_cancel, job_retry
from tests.factories import make_user
from tests.llm_server import Reply
from tests.workflows.helpers import make, outputs, pending, settle, start, tree
from workflows.services import workflow_save

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_runtime")]


def approvals_in_branches(count: int) -> dict:
    return {
        "nodes": [
            {
                "id": "fan",
                "type": "parallel",
                "config": {
                    "branches": [
                        {
                            "name": f"b{i}",
                            "nodes": [
                                {
                                    "id": f"ok{i}",
                                    "type": "approval",
                                    "config": {"title": f"branch {i}"},
                                },
                                {
                                    "id": f"done{i}",
                                    "type": "transform",
                                    "config": {"set": {f"v{i}": str(i)}},
                                },
                            ],
                        }
                        for i in range(count)
                    ]
                },
            }
        ]
    }


def test_an_approval_inside_a_parallel_branch_pauses_only_that_branch(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "fan",
                    "type": "parallel",
                    "config": {
                        "branches": [
                            {
                                "name": "auto",
                                "nodes": [
                                    {"id": "a", "type": "transform", "config": {"set": {"a": "1"}}}
                                ],
                            },
                            {
                                "name": "gated",
                                "nodes": [
                                    {"id": "ok", "type": "approval", "config": {"title": "gate"}},
                                    {"id": "b", "type": "transform", "config": {"set": {"b": "2"}}},
                                ],
                            },
                        ]
                    },
                },
                {
                    "id": "after",
                    "type": "transform",
                    "config": {"set": {"sum": "vars.a + vars.b", "seen": "steps.b.status"}},
                },
            ]
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.WAITING
    branches = {j.input["path"][-2]: j for j in tree(run.job_id) if j.job_type == "workflow-branch"}
    assert branches[0].status == JobStatus.SUCCEEDED and branches[1].status == JobStatus.WAITING
    checkpoint_approve(checkpoint=pending(run.job_id)[0], user=make_user("alice", approver=True))
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert outputs(run.job_id) == {"sum": 3, "seen": "succeeded"}


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_approvals_pending_at_once_decided_in_either_order(acme, order):
    run = start(make(acme, approvals_in_branches(2)))
    settle(run.job_id)
    checkpoints = pending(run.job_id)
    assert sorted(c.title for c in checkpoints) == ["branch 0", "branch 1"]
    assert len({c.pk for c in checkpoints}) == 2  # two ids, each resumable on its own
    by_title = {c.title: c for c in checkpoints}
    for step, index in enumerate(order):
        checkpoint_approve(
            checkpoint=by_title[f"branch {index}"], user=make_user(f"r{step}", approver=True)
        )
        job = settle(run.job_id)
        assert job.status == (JobStatus.WAITING if step == 0 else JobStatus.SUCCEEDED)
    assert Job.objects.get(pk=run.job_id).result["vars"] == {"v0": 0, "v1": 1}


def test_any_join_cancels_the_branches_it_no_longer_needs(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "race",
                    "type": "parallel",
                    "config": {
                        "join": "any",
                        "branches": [
                            {
                                "name": "fast",
                                "nodes": [
                                    {
                                        "id": "f",
                                        "type": "transform",
                                        "config": {"set": {"w": "'fast'"}},
                                    }
                                ],
                            },
                            {
                                "name": "slow",
                                "nodes": [
                                    {"id": "s", "type": "approval", "config": {"title": "slow"}}
                                ],
                            },
                        ],
                    },
                }
            ]
        },
    )
    run = start(flow)
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED and outputs(run.job_id) == {"fast": {"w": "fast"}}
    slow = [
        j for j in tree(run.job_id) if j.job_type == "workflow-branch" and j.input["path"][-2] == 1
    ]
    assert slow[0].status == JobStatus.CANCELLED and not pending(run.job_id)


def test_for_each_in_waves_runs_children_max_parallel_at_a_time(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "for_each",
                    "config": {
                        "items": "[1, 2, 3, 4, 5]",
                        "max_parallel": 2,
                        "nodes": [
                            {
                                "id": "sq",
                                "type": "transform",
                                "config": {"set": {"sq": "item * item"}},
                            }
                        ],
                    },
                }
            ]
        },
    )
    run = start(flow)
    run_job(str(run.job_id))  # the first wave starts and the run waits for it
    assert len([j for j in tree(run.job_id) if j.job_type == "workflow-branch"]) == 2
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert [o["sq"] for o in outputs(run.job_id)] == [1, 4, 9, 16, 25]
    assert len([j for j in tree(run.job_id) if j.job_type == "workflow-branch"]) == 5


def test_an_agent_node_runs_an_agent_task_and_counts_its_tokens(acme):
    agent_create(organization=acme, created_by=None, name="scribe")
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "write",
                    "type": "agent",
                    "config": {"agent": "scribe", "task": "Summarise {{ input.topic }}"},
                }
            ]
        },
    )
    run = start(flow, {"topic": "the plan"})
    job = settle(run.job_id)
    assert job.status == JobStatus.SUCCEEDED
    assert "the plan" in outputs(run.job_id)["answer"]
    child = Job.objects.get(parent_id=run.job_id)
    assert child.job_type == "agent-task" and child.concurrency_key.startswith("agent:")
    assert job.tokens_out == child.tokens_out > 0


def test_a_sub_workflow_that_pauses_then_fails_gives_the_parent_its_error(acme, settings):
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = []
    make(
        acme,
        {
            "nodes": [
                {"id": "hold", "type": "approval", "config": {"title": "child approval"}},
                {"id": "call", "type": "http", "config": {"url": "http://blocked.example/x"}},
            ]
        },
        slug="child",
    )
    parent = make(
        acme,
        {"nodes": [{"id": "sub", "type": "workflow", "config": {"workflow": "child"}}]},
        slug="parent",
    )
    run = start(parent)
    assert settle(run.job_id).status == JobStatus.WAITING
    checkpoint_approve(checkpoint=pending(run.job_id)[0], user=make_user("a", approver=True))
    job = settle(run.job_id)
    assert job.status == JobStatus.FAILED
    assert "workflow child failed" in job.error_message
    assert "blocked.example" in job.error_message  # the child's own error, not a generic one


def test_editing_a_workflow_while_a_run_is_paused_leaves_the_run_on_its_version(acme):
    flow = make(
        acme,
        {
            "nodes": [
                {"id": "ok", "type": "approval", "config": {"title": "v1"}},
                {"id": "say", "type": "transform", "config": {"set": {"v": "'one'"}}},
            ]
        },
    )
    run = start(flow)
    settle(run.job_id)
    workflow_save(
        workflow=flow,
        definition={
            "nodes": [{"id": "say", "type": "transform", "config": {"set": {"v": "'two'"}}}]
        },
    )
    checkpoint_approve(checkpoint=pending(run.job_id)[0], user=make_user("a", approver=True))
    settle(run.job_id)
    assert outputs(run.job_id) == {"v": "one"}
    later = start(flow)
    settle(later.job_id)
    assert outputs(later.job_id) == {"v": "two"} and later.version.number == 2


def test_retrying_a_failed_run_does_not_repeat_a_finished_llm_node(
    acme, llm_server, settings, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-for-retry")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_base_url)
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = []
    llm_server.script(Reply(text="a paid answer", tokens_in=100, tokens_out=10))
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "think",
                    "type": "llm",
                    "config": {"provider": "openai", "model": "gpt-4o-mini", "prompt": "think"},
                },
                {"id": "post", "type": "http", "config": {"url": "http://hooks.example/x"}},
            ]
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.FAILED
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = ["hooks.example"]  # fixed; still no server
    job_retry(job=Job.objects.get(pk=run.job_id))
    settle(run.job_id)
    assert len(llm_server.requests) == 1  # the model was paid once
    keys = list(Job.objects.get(pk=run.job_id).steps.values_list("key", flat=True))
    assert keys.count("think") == 1


def test_retrying_a_failed_run_reruns_only_the_failed_branch(acme, settings, remote):
    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = []  # the call is refused: the branch fails
    flow = make(
        acme,
        {
            "nodes": [
                {
                    "id": "fan",
                    "type": "parallel",
                    "config": {
                        "branches": [
                            {
                                "name": "ok",
                                "nodes": [
                                    {"id": "a", "type": "transform", "config": {"set": {"a": "1"}}}
                                ],
                            },
                            {
                                "name": "call",
                                "nodes": [
                                    {
                                        "id": "b",
                                        "type": "http",
                                        "config": {"url": remote.url + "/ok"},
                                    }
                                ],
                            },
                        ]
                    },
                }
            ]
        },
    )
    run = start(flow)
    assert settle(run.job_id).status == JobStatus.FAILED
    branches = {j.input["path"][-2]: j for j in tree(run.job_id) if j.job_type == "workflow-branch"}
    assert (branches[0].status, branches[1].status) == (JobStatus.SUCCEEDED, JobStatus.FAILED)

    settings.COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = ["127.0.0.1"]  # fixed
    job_retry(job=Job.objects.get(pk=run.job_id))
    assert settle(run.job_id).status == JobStatus.SUCCEEDED
    assert remote.calls == ["/ok"]
    after = {j.input["path"][-2]: j for j in tree(run.job_id) if j.job_type == "workflow-branch"}
    assert set(after) == {0, 1} and after[0].pk == branches[0].pk  # no new children
    assert after[0].finished_at == branches[0].finished_at  # the good branch did not run again
    assert outputs(run.job_id)["ok"] == {"a": 1}


def test_a_concurrency_limit_is_held_while_a_run_waits(acme):
    flow = make(
        acme,
        {
            "concurrency": {"limit": 1},
            "nodes": [{"id": "ok", "type": "approval", "config": {"title": "hold the slot"}}],
        },
    )
    first, second = start(flow), start(flow)
    assert settle(first.job_id).status == JobStatus.WAITING
    assert run_job(str(second.job_id)) == "parked"  # the first holds the slot while waiting
    checkpoint_approve(checkpoint=pending(first.job_id)[0], user=make_user("a", approver=True))
    # Woken, the first is queued: it still holds its slot if the second is tried first.
    Job.objects.filter(pk=second.job_id).update(status=JobStatus.QUEUED, wait_reason="")
    assert run_job(str(second.job_id)) == "parked"
    assert settle(first.job_id).status == JobStatus.SUCCEEDED
    assert Job.objects.get(pk=second.job_id).status == JobStatus.QUEUED  # woken by the release
    assert settle(second.job_id).status == JobStatus.WAITING


def test_a_slot_freed_goes_to_a_parked_run_even_while_another_run_is_woken(acme):
    """Limit 2: A and C wait, B is parked. A is approved (queued again, still holding its
    slot), then C ends: its slot must go to B at once, not at the next periodic recheck."""
    flow = make(
        acme,
        {
            "concurrency": {"limit": 2},
            "nodes": [{"id": "ok", "type": "approval", "config": {"title": "hold"}}],
        },
    )
    a, c = start(flow), start(flow)
    settle(a.job_id)
    settle(c.job_id)
    b = start(flow)
    assert run_job(str(b.job_id)) == "parked"
    person = make_user("p", approver=True)
    checkpoint_approve(checkpoint=pending(a.job_id)[0], user=person)
    assert Job.objects.get(pk=a.job_id).status == JobStatus.QUEUED
    checkpoint_reject(checkpoint=pending(c.job_id)[0], user=person, reason="no")
    run_job(str(c.job_id))  # C ends rejected and frees its slot
    assert Job.objects.get(pk=c.job_id).status == JobStatus.REJECTED
    assert Job.objects.get(pk=b.job_id).status == JobStatus.QUEUED  # woken, not parked


def test_a_concurrency_key_limits_per_key(acme):
    flow = make(
        acme,
        {
            "concurrency": {"limit": 1, "key": "input.customer"},
            "nodes": [{"id": "ok", "type": "approval", "config": {"title": "x"}}],
        },
    )
    a1, a2, b1 = (
        start(flow, {"customer": "a"}),
        start(flow, {"customer": "a"}),
        start(flow, {"customer": "b"}),
    )
    settle(a1.job_id)
    assert run_job(str(a2.job_id)) == "parked"
    assert settle(b1.job_id).status == JobStatus.WAITING  # another customer, another slot


def test_cancelling_a_run_cancels_its_branches(acme):
    run = start(make(acme, approvals_in_branches(2)))
    settle(run.job_id)
    job_cancel(job=Job.objects.get(pk=run.job_id))
    assert {j.status for j in tree(run.job_id)} == {JobStatus.CANCELLED}
    assert not pending(run.job_id)
