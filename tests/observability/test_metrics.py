"""/metrics: jobs run by a real worker process, scraped here and checked by promtool."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from agents.services import agent_create, agent_execute
from checkpoints import services
from checkpoints.models import Checkpoint
from jobs.models import JobStatus
from jobs.services import job_cancel, job_create
from tests.conftest import database_url
from tests.llm_server import Reply
from tests.utils import wait_for, wait_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


TOKEN = "scrape-secret"


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.COUNTERSIGN_METRICS_TOKEN = TOKEN  # tests run with DEBUG off, as production


def scrape(client: Client | None = None) -> tuple[str, Samples]:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode(), parse(response.content.decode())


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool_check(text: str) -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, text=True, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_jobs_through_every_status_are_counted(acme, reviewer, llm_server, tmp_path):
    _, before = scrape()

    approved, cancelled, rejected = (
        job_create(job_type="test-approval", organization=acme) for _ in range(3)
    )
    for job in (approved, cancelled, rejected):
        wait_status(job.pk, JobStatus.WAITING)
    text, waiting = scrape()
    # Gauges are the state now, read from the database.
    assert value(waiting, "agent_checkpoints_pending", kind="approval") == 3
    assert value(waiting, "agent_jobs_waiting", reason="checkpoint") == 3
    assert value(waiting, "agent_checkpoint_oldest_pending_seconds", kind="approval") >= 0
    assert (
        value(
            waiting,
            "agent_workers_up",
            worker=f"test-{settings.CELERY_TASK_DEFAULT_QUEUE}@{os.uname().nodename}",
        )
        == 1
    )

    services.checkpoint_approve(checkpoint=Checkpoint.objects.get(job=approved), user=reviewer)
    services.checkpoint_reject(
        checkpoint=Checkpoint.objects.get(job=rejected), user=reviewer, reason="not now"
    )
    job_cancel(job=cancelled)
    failed = job_create(
        job_type="test-flaky-job",
        organization=acme,
        input={"log": str(tmp_path / "fatal"), "failures": 0, "fatal": True},
    )
    retried = job_create(
        job_type="test-flaky-job",
        organization=acme,
        input={"log": str(tmp_path / "flaky"), "failures": 1},
    )
    agent = agent_create(
        organization=acme, created_by=None, name="counter", provider="openai", model="gpt-4o-mini"
    )
    llm_server.script(Reply(text="done", tokens_in=100, tokens_out=20))
    answered = agent_execute(agent=agent, user=None, task="count")
    ends = [
        (approved, JobStatus.SUCCEEDED),
        (rejected, JobStatus.REJECTED),
        (failed, JobStatus.FAILED),
        (retried, JobStatus.SUCCEEDED),
        (answered, JobStatus.SUCCEEDED),
    ]
    for job, status in ends:
        wait_status(job.pk, status)

    # The worker sends a run's figures just after the run ends: poll until all are in.
    def settled() -> Samples | None:
        _, now = scrape()
        for job, status in ends:
            labels = {"job_type": job.job_type, "status": status}
            if value(now, "agent_jobs_total", **labels) == value(
                before, "agent_jobs_total", **labels
            ):
                return None
        return now

    after = wait_for(settled, message="the worker's figures to reach Redis")
    text, _ = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    approval = {"job_type": "test-approval"}
    assert delta("agent_jobs_total", **approval, status="queued") == 5  # 3 created, 2 woken
    assert delta("agent_jobs_total", **approval, status="running") == 5  # 3 runs + 2 resumes
    assert delta("agent_jobs_total", **approval, status="waiting") == 3
    assert delta("agent_jobs_total", **approval, status="succeeded") == 1
    assert delta("agent_jobs_total", **approval, status="rejected") == 1
    assert delta("agent_jobs_total", **approval, status="cancelled") == 1
    flaky = {"job_type": "test-flaky-job"}
    assert delta("agent_jobs_total", **flaky, status="failed") == 1
    assert delta("agent_jobs_total", **flaky, status="retrying") == 1
    assert delta("agent_jobs_total", **flaky, status="running") == 3  # 1 + 2 attempts
    assert delta("agent_jobs_total", **flaky, status="succeeded") == 1
    assert delta("agent_jobs_duration_seconds_count", **approval, status="succeeded") == 1
    assert delta("agent_jobs_duration_seconds_count", **approval, status="cancelled") == 1
    assert (
        delta("agent_jobs_duration_seconds_bucket", **approval, status="succeeded", le="+Inf") == 1
    )
    assert delta("agent_job_steps_total", **approval, status="succeeded") == 1  # "after"
    # "setup" once per job: the retried attempt replays it from memory
    assert delta("agent_job_steps_total", **flaky, status="succeeded") == 2
    assert delta("agent_step_duration_seconds_count", **approval) == 1

    assert delta("agent_checkpoints_total", kind="approval", status="pending") == 3
    assert delta("agent_checkpoints_total", kind="approval", status="approved") == 1
    assert delta("agent_checkpoints_total", kind="approval", status="rejected") == 1
    assert delta("agent_checkpoints_total", kind="approval", status="cancelled") == 1
    assert delta("agent_checkpoint_decision_seconds_count", kind="approval") == 2
    assert value(after, "agent_checkpoints_pending", kind="approval") == 0

    llm = {"provider": "openai", "model": "gpt-4o-mini"}
    assert delta("agent_llm_tokens_total", **llm, direction="in") == 100
    assert delta("agent_llm_tokens_total", **llm, direction="out") == 20
    # $0.15 in and $0.60 out per million tokens
    expected = Decimal(100) * Decimal("0.15") / 10**6 + Decimal(20) * Decimal("0.60") / 10**6
    assert delta("agent_llm_cost_total", **llm) == pytest.approx(float(expected), rel=1e-9)
    assert delta("agent_llm_request_seconds_count", **llm) == 1

    # HTTP and database metrics from django-prometheus are served too.
    assert "django_http_requests_total_by_method_total" in text
    assert "django_db_execute_total" in text
    promtool_check(text)
    assert_shipped_queries_use_served_names(text)


def assert_shipped_queries_use_served_names(text: str) -> None:
    """The dashboard and the alert rules ask only for series that /metrics serves."""
    import re

    families = list(text_string_to_metric_families(text))
    served = {f.name for f in families} | {s.name for f in families for s in f.samples}
    deploy = Path(settings.BASE_DIR) / "deploy"
    for path in [
        deploy / "grafana" / "countersign-dashboard.json",
        deploy / "prometheus" / "alerts.yml",
    ]:
        asked = set(re.findall(r"\b((?:agent|django)_[a-z_]+)", path.read_text()))
        assert asked and asked <= served, f"{path.name}: {sorted(asked - served)}"


def test_counts_outlive_the_process_that_made_them_and_every_process_reads_the_same():
    env = {
        **os.environ,
        "COUNTERSIGN_METRICS_PREFIX": settings.COUNTERSIGN_METRICS_PREFIX,
        "DATABASE_URL": database_url(),
    }
    record = (
        "from core import metrics; "
        "metrics.inc('agent_jobs_total', 2, job_type='elsewhere', status='queued')"
    )
    for _ in range(2):  # two processes, each gone before the scrape
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", record],
            env=env,
            check=True,
            cwd=settings.BASE_DIR,
            capture_output=True,
            timeout=120,
        )
    _, here = scrape()
    printed = subprocess.run(
        [sys.executable, "manage.py", "metrics"],
        env=env,
        check=True,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    there = parse(printed.stdout)
    labels = {"job_type": "elsewhere", "status": "queued"}
    assert value(here, "agent_jobs_total", **labels) == 4
    assert value(there, "agent_jobs_total", **labels) == 4


def test_a_metrics_token_keeps_other_readers_out(settings):
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert ok.status_code == 200 and b"agent_jobs_total" in ok.content

    settings.COUNTERSIGN_METRICS_TOKEN = ""
    off = Client().get("/metrics")  # every organization's figures: not without a token
    assert off.status_code == 403 and b"COUNTERSIGN_METRICS_TOKEN" in off.content
    settings.DEBUG = True
    assert Client().get("/metrics").status_code == 200  # local development


def test_the_shipped_alert_rules_are_valid():
    rules = Path(settings.BASE_DIR) / "deploy" / "prometheus" / "alerts.yml"
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_several_web_processes_serve_the_same_http_figures(worker, tmp_path):
    """uvicorn with two processes sharing PROMETHEUS_MULTIPROC_DIR: whichever process
    answers a scrape counts the requests both served."""
    import http.client

    from jobs.processes import poll_until
    from tests.api.conftest import free_port
    from tests.conftest import RUNTIME_ENV

    port, shared = free_port(), tmp_path / "prometheus"
    shared.mkdir()
    env = {
        **os.environ,
        **RUNTIME_ENV,
        "DATABASE_URL": database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "COUNTERSIGN_METRICS_TOKEN": TOKEN,
    }
    with open(tmp_path / "uvicorn.log", "w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def get(path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def answered_by_both() -> bool:
        try:
            get("/healthz")
        except OSError:
            return False
        return len(list(shared.glob("*.db"))) >= 2  # each process has written its files

    try:
        poll_until(answered_by_both, timeout=60, what="both uvicorn processes to serve")
        for _ in range(20):
            assert get("/healthz")[0] == 200
        seen = []
        for _ in range(8):  # new connections: the two processes take turns unpredictably
            status, text = get("/metrics")
            assert status == 200
            gets = value(parse(text), "django_http_requests_total_by_method_total", method="GET")
            seen.append(gets)
        # Every scrape counts every GET before it, whichever process served it.
        assert all(count >= 20 + n for n, count in enumerate(seen)), seen
        assert seen == sorted(seen)
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_workflow_runs_and_nodes_are_counted_with_a_bounded_workflow_label(acme):
    """Runs on the worker, counted in Redis and scraped here; once the label set is full
    a new workflow's figures go under `other`."""
    import redis

    from core.metrics.recorder import key
    from workflows.metrics import MAX_WORKFLOW_LABELS, OTHER
    from workflows.services import workflow_create, workflow_run_start

    nodes = [
        {"id": "a", "type": "transform", "config": {"set": {"x": "1"}}},
        {"id": "b", "type": "transform", "config": {"set": {"y": "2"}}},
    ]
    _, before = scrape()
    metered = workflow_create(
        organization=acme, slug="metered", name="M", definition={"nodes": nodes}
    )
    wait_status(workflow_run_start(workflow=metered, input={}).job_id, JobStatus.SUCCEEDED)

    labels = redis.Redis.from_url(settings.COUNTERSIGN_METRICS_REDIS_URL)
    names = key("workflow-labels")
    filler = [f"filler-{i}" for i in range(MAX_WORKFLOW_LABELS)]
    try:
        for name in filler:
            if labels.scard(names) >= MAX_WORKFLOW_LABELS:
                break
            labels.sadd(names, name)
        late = workflow_create(
            organization=acme, slug="late", name="L", definition={"nodes": nodes}
        )
        wait_status(workflow_run_start(workflow=late, input={}).job_id, JobStatus.SUCCEEDED)

        def counted() -> Samples | None:
            _, now = scrape()
            done = value(now, "workflow_executions_total", workflow=OTHER, status="succeeded")
            return (
                now
                if done
                > value(before, "workflow_executions_total", workflow=OTHER, status="succeeded")
                else None
            )

        after = wait_for(counted, message="the worker's workflow figures")
    finally:
        labels.srem(names, *filler)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("workflow_executions_total", workflow="metered", status="started") == 1
    assert delta("workflow_executions_total", workflow="metered", status="succeeded") == 1
    steps = {"workflow": "metered", "step_type": "transform"}
    assert delta("workflow_step_duration_seconds_count", **steps) == 2
    assert delta("workflow_executions_total", workflow=OTHER, status="succeeded") == 1
    assert not any(dict(labels_).get("workflow") == "late" for _, labels_ in after)
    text, _ = scrape()
    promtool_check(text)
