"""Workflows benchmark: what the workflow engine adds to the durable runtime.

Measures, against a real Celery worker (prefork pool), the real broker and PostgreSQL:

* orchestration cost per node: a chain of 400 `transform` nodes on one worker slot,
  from the run's start to its success (target: at most 5 ms per node), next to a job
  of 400 no-op `ctx.step` calls measured the same way, a 1-step durable job and a
  plain Celery task;
* event latency: 200 runs wait at a `wait_for_event` node; a matching event is sent
  for each, one at a time, on an idle worker; from `event_send` returning (committed,
  wake-up published) to the run's next node starting (targets: p50 <= 20 ms,
  p99 <= 100 ms);
* parallel: a `parallel` node of 50 branches on a worker with 2 slots, with branches
  that sleep 0.2 s and branches of 5 transforms, against the same nodes in sequence;
  then 50 branches waiting for events, during which the worker must report no
  active task (waiting holds no slot) and run a new job at once;
* resume cost of a run with 1,000 finished nodes: in this process (`run_job`, as
  a worker would), the database round trips of the resumed run (one statement
  must load all its steps) and its time against a run with none; then on the
  worker, event -> next node running.

Run it with `make bench-workflows` (PostgreSQL and Redis from DATABASE_URL, REDIS_URL
and CELERY_BROKER_URL). It uses bench/engine.py's set-up, worker and helpers: it never
touches the database named in DATABASE_URL but (re)creates `countersign_bench`,
migrates it and truncates the job, checkpoint and workflow tables before each
scenario; its worker listens on a queue of its own, purged at the end. Two benchmark
runs at once would share (and truncate) countersign_bench: run one at a time.
Options: --nodes, --events, --branches, --long-nodes, --repeat, --show-queries.
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder heads sys.path and this module would shadow the
# `workflows` app: the project's root goes first.
sys.path.insert(0, str(ROOT))

from bench import engine  # noqa: E402
from bench.engine import percentile, verdict  # noqa: E402

TARGET_MS_PER_NODE = 5.0
TARGET_P50_MS = engine.TARGET_P50_MS
TARGET_P99_MS = engine.TARGET_P99_MS
TARGET_STEP_LOADS = 1  # statements that read a resumed run's step rows
EVENT = "bench.go"
SLEEP_SECONDS = 0.2
BRANCH_TRANSFORMS = 5
BASELINE_ITEMS = 200  # plain tasks and 1-step jobs, queued at once
# Windmill's published cross-engine figures (Go, one worker, a flow of 400 lightweight
# tasks): total seconds / 400. Not measured here; printed for context only.
PUBLISHED_MS_PER_TASK = {"Windmill": 49.3, "Hatchet": 89.6, "Temporal": 97.5}
TABLES = ("agents", "checkpoints", "jobs", "workflows")


# --- set-up and helpers --------------------------------------------------------------
def truncate() -> None:
    """Jobs and checkpoints as bench/engine.py does, and the workflows, runs and events."""
    engine.truncate(TABLES)


@cache
def organization() -> Any:
    """The default organization, read once (so that timed sends only send)."""
    from accounts.services import default_organization

    return default_organization()


def make_workflow(slug: str, definition: dict[str, Any]) -> Any:
    from workflows.services import workflow_create

    return workflow_create(organization=organization(), slug=slug, name=slug, definition=definition)


def start_run(workflow: Any) -> str:
    """A run of `workflow` (its job is enqueued on commit); the job's id."""
    from workflows.services import workflow_run_start

    return str(workflow_run_start(workflow=workflow, input={}).job_id)


def send(job_id: str) -> None:
    """The event that the run `job_id` waits for (each run's wait matches its own id)."""
    from workflows.events import event_send

    event_send(organization=organization(), name=EVENT, data={"run": job_id})


def wait_done(job_id: str, timeout: float) -> tuple[float, float]:
    """Wait for the job to succeed; (started_at, finished_at) as Unix times.

    Polled every 50 ms: the times are read from the row, so polling costs no precision
    and takes little of the two cores from the worker."""
    from jobs.models import Job, JobStatus

    def done() -> bool:
        status = engine.job_status(job_id)
        engine.raise_if_broken([status])
        return status == JobStatus.SUCCEEDED

    engine.wait_until(done, timeout=timeout, what=f"job {job_id} to succeed", interval=0.05)
    job = Job.objects.get(pk=job_id)
    assert job.started_at is not None and job.finished_at is not None
    return job.started_at.timestamp(), job.finished_at.timestamp()


def runs_of(job_id: str) -> int:
    """How many times the job ran: its job.started and job.resumed events."""
    from jobs.models import JobEvent

    return JobEvent.objects.filter(job_id=job_id, kind__in=["job.started", "job.resumed"]).count()


def median(values: list[float]) -> float:
    return statistics.median(values)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- definitions ---------------------------------------------------------------------
def transform(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "config": {"set": {"x": "vars.x + 1"}}}


def chain(n: int) -> dict[str, Any]:
    return {"variables": {"x": 0}, "nodes": [transform(f"t{i}") for i in range(n)]}


def waiter(before: int) -> dict[str, Any]:
    """`before` transforms, a wait for this run's own event, then one transform, whose
    step's start is when the run is running again past the wait."""
    return {
        "variables": {"x": 0},
        "nodes": [
            *(transform(f"t{i}") for i in range(before)),
            {
                "id": "go",
                "type": "wait_for_event",
                "config": {"event": EVENT, "match": "event.data.run == run.id"},
            },
            transform("after"),
        ],
    }


Body = Callable[[int], list[dict[str, Any]]]


def sleeps(i: int) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "type": "sleep", "config": {"seconds": SLEEP_SECONDS}}]


def transforms(i: int) -> list[dict[str, Any]]:
    return [transform(f"t{i}_{j}") for j in range(BRANCH_TRANSFORMS)]


def waits(i: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"w{i}",
            "type": "wait_for_event",
            "config": {"event": EVENT, "match": f"event.data.branch == {i}"},
        }
    ]


def fan_out(branches: int, body: Body) -> dict[str, Any]:
    return {
        "variables": {"x": 0},
        "nodes": [
            {
                "id": "fan",
                "type": "parallel",
                "config": {
                    "branches": [{"name": f"b{i}", "nodes": body(i)} for i in range(branches)]
                },
            }
        ],
    }


def in_sequence(branches: int, body: Body) -> dict[str, Any]:
    return {"variables": {"x": 0}, "nodes": [n for i in range(branches) for n in body(i)]}


# --- 1. orchestration cost per node ---------------------------------------------------
@dataclass
class Chain:
    label: str
    units: int
    seconds: list[float]  # per repetition: start asked -> succeeded
    worker_seconds: list[float]  # per repetition: claimed -> succeeded

    @property
    def ms_per_unit(self) -> float:
        return 1000 * median(self.seconds) / self.units

    @property
    def worker_ms_per_unit(self) -> float:
        return 1000 * median(self.worker_seconds) / self.units


def timed(label: str, units: int, repeat: int, start: Callable[[], str]) -> Chain:
    """`repeat` runs one after the other, each from `start()` to its job's success."""
    seconds, worker_seconds = [], []
    for _ in range(repeat):
        asked = time.time()
        job_id = start()
        claimed, finished = wait_done(job_id, timeout=engine.timeout_for(units))
        seconds.append(finished - asked)
        worker_seconds.append(finished - claimed)
    return Chain(label, units, seconds, worker_seconds)


def per_node(nodes: int, repeat: int) -> tuple[list[engine.Throughput], Chain, Chain]:
    from jobs.services import job_create

    baselines = [
        engine.plain_tasks(BASELINE_ITEMS),
        engine.durable_jobs("bench-noop-1", BASELINE_ITEMS, "durable job, 1 step"),
    ]
    truncate()
    steps = timed(
        f"job of {nodes} no-op steps",
        nodes,
        repeat,
        lambda: str(job_create(job_type="bench-steps", input={"n": nodes}).pk),
    )
    flow = make_workflow("chain", chain(nodes))
    workflow = timed(f"{nodes} transform nodes", nodes, repeat, lambda: start_run(flow))
    return baselines, steps, workflow


def print_per_node(baselines: list[engine.Throughput], steps: Chain, flow: Chain) -> None:
    plain, one = baselines
    print("\nOrchestration cost per node (one worker: prefork, concurrency 1)")
    print(f"  {'scenario':<28}{'units':>7}{'wall ms':>10}{'ms/unit':>9}{'in worker':>11}")
    for t in baselines:
        print(f"  {t.label:<28}{t.items:>7}{1000 * t.seconds:>10.0f}{t.ms_per_item:>9.2f}{'':>11}")
    for c in (steps, flow):
        print(
            f"  {c.label:<28}{c.units:>7}{1000 * median(c.seconds):>10.0f}"
            f"{c.ms_per_unit:>9.2f}{c.worker_ms_per_unit:>11.2f}"
        )
    ok = flow.ms_per_unit <= TARGET_MS_PER_NODE
    print(
        f"  per node: {flow.ms_per_unit:.2f} ms, {flow.ms_per_unit / steps.ms_per_unit:.2f}× a "
        f"memoized no-op step, {flow.ms_per_unit / plain.ms_per_item:.2f}× a plain task   "
        f"target ≤ {TARGET_MS_PER_NODE:.0f} ms   {verdict(ok)}"
    )
    print(
        f"  (the two chains: median of {len(flow.seconds)} runs, start asked → succeeded; "
        f"'in worker': claimed → succeeded. The plain task and the 1-step job: per item "
        f"over {plain.items} queued at once.)"
    )
    print(
        f"  {one.ms_per_item:.1f} ms for a whole 1-step durable job against "
        f"{flow.ms_per_unit:.2f} ms per node: a node runs inside its run's task, not as a "
        f"task of its own"
    )
    published = ", ".join(f"{k} ≈ {v:.0f} ms" for k, v in PUBLISHED_MS_PER_TASK.items())
    print(f"  for context, NOT measured here: Windmill's published per-task figures: {published}")


# --- 2. event sent -> run running again ------------------------------------------------
@dataclass
class Latency:
    latencies_ms: list[float]  # event_send returned -> the node after the wait started
    to_run_ms: list[float]  # event_send returned -> the run's job.resumed event
    send_ms: list[float]  # event_send itself
    open_waits: list[int]  # open waits of the event's name when it was sent

    def p(self, q: int) -> float:
        return percentile(self.latencies_ms, q)


def event_latency(definition: dict[str, Any], n: int) -> Latency:
    """N runs paused at a wait; one event each, one at a time, each on an idle worker."""
    from jobs.models import JobEvent, JobStatus, JobStep

    truncate()
    flow = make_workflow("waiter", definition)
    job_ids = [start_run(flow) for _ in range(n)]
    # With one pool slot N runs can only all be waiting if waiting holds no slot.
    nodes = len(definition["nodes"])
    engine.wait_for_status(JobStatus.WAITING, n, timeout=engine.timeout_for(n * nodes))
    result = Latency([], [], [], [])
    for index, job_id in enumerate(job_ids):
        before = time.time()
        send(job_id)  # commits; its on_commit publishes the wake-up
        committed = time.time()
        engine.wait_for_job(job_id, JobStatus.SUCCEEDED)
        after = JobStep.objects.get(job_id=job_id, key="after")
        assert after.started_at is not None
        result.latencies_ms.append(1000 * (after.started_at.timestamp() - committed))
        result.send_ms.append(1000 * (committed - before))
        result.open_waits.append(n - index)
        # The run writes its events in one batch just after the job's final status.
        resumed = JobEvent.objects.filter(job_id=job_id, kind="job.resumed")
        run_started = engine.poll(resumed.first, timeout=5)
        result.to_run_ms.append(1000 * (run_started.created_at.timestamp() - committed))
        time.sleep(engine.SETTLE_SECONDS)
    return result


def print_latency(r: Latency) -> None:
    n = len(r.latencies_ms)
    print(
        f"\nEvent sent → waiting run running again ({n} runs at a wait_for_event node, one "
        f"event each, one at a time on an idle worker)"
    )
    print(f"  {'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}   (ms)")
    print(f"  {r.p(50):>8.1f}{r.p(95):>8.1f}{r.p(99):>8.1f}{max(r.latencies_ms):>8.1f}")
    print(
        f"  p50 target ≤ {TARGET_P50_MS:.0f} ms   {verdict(r.p(50) <= TARGET_P50_MS)}"
        f"   p99 target ≤ {TARGET_P99_MS:.0f} ms   {verdict(r.p(99) <= TARGET_P99_MS)}"
    )
    to_run = percentile(r.to_run_ms, 50)
    print(
        f"  p50 split: {to_run:.1f} ms to the run's job.resumed event (message delivered, "
        f"lease claimed, steps loaded), {r.p(50) - to_run:.1f} ms more to resolve the wait, "
        f"record the node and start the next one"
    )
    tenth = max(1, n // 10)
    print(
        f"  (event_send itself, not included: p50 {percentile(r.send_ms, 50):.1f} ms; "
        f"{statistics.mean(r.send_ms[:tenth]):.1f} ms with {r.open_waits[0]}–"
        f"{r.open_waits[tenth - 1]} waits open on the name, "
        f"{statistics.mean(r.send_ms[-tenth:]):.1f} ms with {r.open_waits[-tenth]}–"
        f"{r.open_waits[-1]})"
    )


# --- 3. parallel branches on two slots -----------------------------------------------
@dataclass
class Fan:
    label: str
    parallel_s: float  # start asked -> succeeded
    sequence_s: float
    parent_runs: int  # times the parallel run's own job ran
    start_ms: float  # the parallel node's step that creates the branch jobs


def started_branches_ms(job_id: str) -> float:
    """How long the parallel node `fan` took to create its branch jobs (one step)."""
    from jobs.models import JobStep

    step = JobStep.objects.get(job_id=job_id, key="fan:start")
    assert step.started_at is not None and step.finished_at is not None
    return 1000 * (step.finished_at - step.started_at).total_seconds()


def fan_vs_sequence(label: str, branches: int, body: Body) -> Fan:
    truncate()
    fan = make_workflow("fan", fan_out(branches, body))
    seq = make_workflow("sequence", in_sequence(branches, body))
    results = []
    for flow in (fan, seq):
        asked = time.time()
        job_id = start_run(flow)
        _, finished = wait_done(job_id, timeout=engine.timeout_for(20 * branches))
        results.append((finished - asked, job_id))
    (parallel_s, fan_job), (sequence_s, _) = results
    return Fan(label, parallel_s, sequence_s, runs_of(fan_job), started_branches_ms(fan_job))


@dataclass
class Waiting:
    branches: int
    seconds_to_wait: float  # start asked -> the run and every branch waiting
    active_tasks: int | None
    probe_ms: float
    send_s: float  # one event per branch, sent one after the other
    to_done_ms: float  # the last event's commit -> the run succeeded
    parent_runs: int


def waiting_branches(branches: int, worker: engine.Worker) -> Waiting:
    """A parallel node whose branches all wait for events: are the two slots free?"""
    from jobs.models import Job, JobStatus
    from workflows.events import event_send

    truncate()
    flow = make_workflow("waiting", fan_out(branches, waits))
    asked = time.time()
    job_id = start_run(flow)
    engine.wait_for_status(JobStatus.WAITING, branches + 1, timeout=engine.timeout_for(branches))
    all_waiting = time.time()
    active = worker.active_tasks()
    probe_started = time.time()
    probe = engine.create_jobs("bench-noop-1", 1)[0]
    engine.wait_for_job(probe, JobStatus.SUCCEEDED)
    probe_done = engine.latest(Job.objects.filter(pk=probe), "finished_at")
    sending = time.time()
    for i in range(branches):
        event_send(organization=organization(), name=EVENT, data={"branch": i})
    sent = time.time()
    _, finished = wait_done(job_id, timeout=engine.timeout_for(branches))
    return Waiting(
        branches,
        all_waiting - asked,
        active,
        1000 * (probe_done - probe_started),
        sent - sending,
        1000 * (finished - sent),
        runs_of(job_id),
    )


def print_parallel(fans: list[Fan], w: Waiting, branches: int) -> None:
    print(f"\nParallel: {branches} branches on one worker with 2 slots (prefork, concurrency 2)")
    print(f"  {'branches of':<26}{'parallel s':>11}{'in sequence s':>15}{'speed-up':>10}")
    for f in fans:
        print(
            f"  {f.label:<26}{f.parallel_s:>11.2f}{f.sequence_s:>15.2f}"
            f"{f.sequence_s / f.parallel_s:>9.1f}×"
        )
    print(
        "  (start asked → succeeded, one run each; the parallel run's own job ran "
        + ", ".join(f"{f.parent_runs}×" for f in fans)
        + ": once to start the branches, then once per wake-up by a branch's end; "
        + "its step creating the branch jobs took "
        + ", ".join(f"{f.start_ms:.0f} ms" for f in fans)
        + ")"
    )
    active = "no reply" if w.active_tasks is None else str(w.active_tasks)
    print(
        f"  {w.branches} branches waiting for events (all waiting {w.seconds_to_wait:.2f} s "
        f"after the start): worker active tasks {active} of 2   "
        f"target 0   {verdict(w.active_tasks == 0)}"
    )
    print(f"  a new bench-noop-1 job meanwhile: job_create → succeeded in {w.probe_ms:.1f} ms")
    print(
        f"  then one event per branch, sent in {w.send_s:.2f} s; last sent → run succeeded "
        f"in {w.to_done_ms:.0f} ms (the run's own job ran {w.parent_runs}×)"
    )


# --- 4. resuming a run with many finished nodes ----------------------------------------
@dataclass
class Resume:
    nodes: int
    first_run_s: float  # the first pass: every node, then the wait (in-process)
    queries: int  # round trips of the resumed run
    step_loads: int  # of which statements that read step rows
    steps: int  # the steps the resumed run had recorded
    sql: list[str]
    long_ms: list[float]  # resume of a run with `nodes` finished nodes
    short_ms: list[float]  # resume of a run with none
    load_ms: float  # the statement that loads the steps, on its own
    send_queries: int  # round trips of the event_send that woke the counted run


def is_step_load(sql: str) -> bool:
    """A statement that reads step rows (not the MIN(started_at) of a node's record)."""
    return sql.startswith("SELECT") and 'FROM "agents_jobstep"' in sql and "MIN(" not in sql


def resume_cost(nodes: int, repeat: int) -> Resume:
    """In this process, before the worker starts (so nothing else claims the runs)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.models import JobStep
    from jobs.runtime.engine import run_job

    truncate()
    long = make_workflow("long", waiter(nodes))
    short = make_workflow("short", waiter(0))

    def paused(flow: Any) -> tuple[str, float]:
        job_id = start_run(flow)
        started = time.perf_counter()
        if (outcome := run_job(job_id)) != "waiting":
            raise RuntimeError(f"the first pass of {job_id} ended {outcome}")
        return job_id, time.perf_counter() - started

    def resumed(job_id: str) -> float:
        send(job_id)
        started = time.perf_counter()
        if (outcome := run_job(job_id)) != "succeeded":
            raise RuntimeError(f"the resumed run of {job_id} ended {outcome}")
        return 1000 * (time.perf_counter() - started)

    counted, first_run_s = paused(long)
    recorded = JobStep.objects.filter(job_id=counted).count()  # its nodes and the wait
    with CaptureQueriesContext(connection) as sending:
        send(counted)
    with CaptureQueriesContext(connection) as captured:
        run_job(counted)
    sql = [q["sql"] for q in captured]
    long_ms = [resumed(paused(long)[0]) for _ in range(repeat)]
    short_ms = [resumed(paused(short)[0]) for _ in range(repeat)]
    loads = []
    for _ in range(5):
        started = time.perf_counter()
        list(JobStep.objects.filter(job_id=counted))
        loads.append(1000 * (time.perf_counter() - started))
    truncate()
    engine.purge_queue()  # the runs' messages; nobody should run them
    return Resume(
        nodes,
        first_run_s,
        len(sql),
        sum(1 for s in sql if is_step_load(s)),
        recorded,
        sql,
        long_ms,
        short_ms,
        median(loads),
        len(sending),
    )


def print_resume(r: Resume, show_sql: bool) -> None:
    print(
        f"\nResume of a run with {r.nodes} finished nodes, then a wait_for_event "
        f"(in-process: run_job, as a worker would)"
    )
    print(
        f"  first pass ({r.nodes} nodes, then the wait): {r.first_run_s:.2f} s, "
        f"{1000 * r.first_run_s / r.nodes:.2f} ms per node"
    )
    ok = r.step_loads == TARGET_STEP_LOADS
    print(
        f"  resumed run: {r.queries} round trips, of which {r.step_loads} read(s) the "
        f"{r.steps} steps   target {TARGET_STEP_LOADS}   {verdict(ok)}"
    )
    print(
        f"  resume → succeeded: {median(r.long_ms):.1f} ms (median of {len(r.long_ms)}; "
        f"{median(r.short_ms):.1f} ms for a run with no node before the wait); "
        f"the step load alone {r.load_ms:.1f} ms"
    )
    print(f"  (the event_send that woke it: {r.send_queries} round trips)")
    extra = (median(r.long_ms) - median(r.short_ms)) / r.nodes
    print(f"  each finished node adds {1000 * extra:.0f} µs to a resume (load and replay)")
    if show_sql:
        print("  statements of the resumed run:")
        for i, sql in enumerate(r.sql, start=1):
            print(f"    {i:>2}. {' '.join(sql.split())[:110]}")


def print_resume_on_worker(nodes: int, w: Latency) -> None:
    print(
        f"\nThe same on the worker (concurrency 1): {len(w.latencies_ms)} runs with {nodes} "
        f"finished nodes, event sent → next node running: median "
        f"{median(w.latencies_ms):.1f} ms (max {max(w.latencies_ms):.1f}; "
        f"{median(w.to_run_ms):.1f} ms to the job.resumed event)"
    )


# --- output ----------------------------------------------------------------------------
def markdown(
    baselines: list[engine.Throughput],
    steps: Chain,
    flow: Chain,
    latency: Latency,
    fans: list[Fan],
    waiting: Waiting,
    resume: Resume,
    long_latency: Latency,
) -> str:
    plain, one = baselines
    node_ok = flow.ms_per_unit <= TARGET_MS_PER_NODE
    active = "no reply" if waiting.active_tasks is None else str(waiting.active_tasks)
    rows = [
        "<!-- bench:workflows -->",
        "| Measure | Result | Target | Verdict |",
        "|---|---|---|---|",
        f"| Plain Celery task writing one row; a 1-step durable job (baselines) "
        f"| {plain.ms_per_item:.1f} ms; {one.ms_per_item:.1f} ms | | |",
        f"| Job of {steps.units} no-op `ctx.step` calls (baseline) "
        f"| {1000 * median(steps.seconds):.0f} ms, {steps.ms_per_unit:.2f} ms per step | | |",
        f"| Workflow of {flow.units} `transform` nodes, run start → succeeded "
        f"| {1000 * median(flow.seconds):.0f} ms, {flow.ms_per_unit:.2f} ms per node "
        f"({flow.ms_per_unit / steps.ms_per_unit:.2f}× a step) "
        f"| ≤ {TARGET_MS_PER_NODE:.0f} ms per node | {verdict(node_ok)} |",
        f"| Event sent → waiting run running again, p50 "
        f"| {latency.p(50):.1f} ms | ≤ {TARGET_P50_MS:.0f} ms "
        f"| {verdict(latency.p(50) <= TARGET_P50_MS)} |",
        f"| Same, p95 / p99 / max ({len(latency.latencies_ms)} runs) "
        f"| {latency.p(95):.1f} / {latency.p(99):.1f} / {max(latency.latencies_ms):.1f} ms "
        f"| p99 ≤ {TARGET_P99_MS:.0f} ms | {verdict(latency.p(99) <= TARGET_P99_MS)} |",
    ]
    for f in fans:
        rows.append(
            f"| `parallel` of {waiting.branches} branches of {f.label}, 2 worker slots "
            f"| {f.parallel_s:.2f} s; in sequence {f.sequence_s:.2f} s "
            f"({f.sequence_s / f.parallel_s:.1f}×) | | |"
        )
    rows += [
        f"| {waiting.branches} branches waiting for events: worker slots held; a new job "
        f"meanwhile | {active}; {waiting.probe_ms:.0f} ms to succeed | 0 "
        f"| {verdict(waiting.active_tasks == 0)} |",
        f"| Resume of a run with {resume.nodes} finished nodes: round trips; step loads "
        f"| {resume.queries}; {resume.step_loads} | 1 step load "
        f"| {verdict(resume.step_loads == TARGET_STEP_LOADS)} |",
        f"| Same, resume → succeeded (in-process) "
        f"| {median(resume.long_ms):.1f} ms ({median(resume.short_ms):.1f} ms with no "
        f"finished node) | | |",
        f"| Same, on the worker: event sent → next node running "
        f"| {median(long_latency.latencies_ms):.1f} ms "
        f"(median of {len(long_latency.latencies_ms)}) | | |",
        "",
        f"Measured by `make bench-workflows` on {engine.machine_note()}; one Celery worker, "
        f"prefork pool, concurrency 1 (concurrency 2 for the parallel rows).",
    ]
    return "\n".join(rows)


# --- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=400, help="transform nodes (default 400)")
    parser.add_argument(
        "--events", type=int, default=200, help="runs waiting for an event (default 200)"
    )
    parser.add_argument(
        "--branches", type=int, default=50, help="branches of the parallel node (default 50)"
    )
    parser.add_argument(
        "--long-nodes",
        type=int,
        default=1000,
        help="finished nodes of the resumed run (default 1000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs per timed chain and resume (default 5)"
    )
    parser.add_argument(
        "--show-queries", action="store_true", help="list the SQL of the resumed run"
    )
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.events < 2 or args.repeat < 1:
        parser.error("--nodes and --repeat must be >= 1, --events >= 2")
    if not 1 <= args.branches <= 100 or not 1 <= args.long_nodes <= 1990:
        parser.error("--branches must be 1 to 100, --long-nodes 1 to 1990 (definition limits)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    database_url = engine.setup_django()
    print("Countersign workflows benchmark")
    print(f"  {engine.machine_note()} ({engine.BENCH_DATABASE})")
    print(f"  queue {engine.QUEUE}; worker log {engine.LOG_PATH}")
    print(f"  load average before: {load()}")
    try:
        resume = resume_cost(args.long_nodes, args.repeat)
        print_resume(resume, args.show_queries)
        with engine.running_worker(database_url) as worker:
            engine.warm_up()
            truncate()
            warm = make_workflow("warm-up", chain(20))
            for _ in range(5):
                wait_done(start_run(warm), timeout=60)
            baselines, steps, flow = per_node(args.nodes, args.repeat)
            print_per_node(baselines, steps, flow)
            latency = event_latency(waiter(0), args.events)
            print_latency(latency)
            long_latency = event_latency(waiter(args.long_nodes), args.repeat)
            print_resume_on_worker(args.long_nodes, long_latency)
        with engine.running_worker(database_url, concurrency=2) as worker:
            fans = [
                fan_vs_sequence(f"a {SLEEP_SECONDS} s sleep", args.branches, sleeps),
                fan_vs_sequence(f"{BRANCH_TRANSFORMS} transforms", args.branches, transforms),
            ]
            waiting = waiting_branches(args.branches, worker)
            print_parallel(fans, waiting, args.branches)
    finally:
        with suppress(Exception):
            engine.purge_queue()
        with suppress(Exception):
            truncate()
        with suppress(Exception):
            from core.metrics.recorder import forget_all

            forget_all()  # the benchmark's own metrics keys
    print(f"\n  load average after: {load()} (other work on the machine moves every figure)")
    print("\n" + markdown(baselines, steps, flow, latency, fans, waiting, resume, long_latency))


if __name__ == "__main__":
    main()
