"""Running a workflow: the `workflow` job type walks its pinned definition node by node
through the runtime, and `workflow-branch` runs a node list of it as a child job (a
parallel branch, a wave of for_each iterations).

Every node is memoized: its record (status, input as evaluated, output, error, usage)
is the step keyed by the node's id, prefixed by its iteration inside an inline
for_each (`each[2]/node`). What a node waits for or starts comes first, as steps and
waits of its own keyed `<node key>:<part>` (`approve:wait`, `fanout:start`). So a run
that resumes, or is retried, never repeats a finished node; a failed run that is
retried goes on from the node that failed (workflows/retries.py).

A node that fails is retried per its `retry` policy (its step, re-run after a back-off,
no worker held). If it still fails: with `continue_on_error` (its own or a container's
around it) its failure is recorded and the flow goes on; otherwise the run's
`on_failure` nodes run and the run fails. A rejected approval ends the run `rejected`
unless `continue_on_error` lets the flow read it (`steps.x.output.approved`).
"""

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any

from django.db import transaction
from django.db.models import Min, Sum
from django.utils import timezone

from agents.http import HttpFailed, http_call
from agents.llm import call_model
from agents.models import Agent
from agents.providers.base import ProviderError
from agents.providers.registry import get_provider
from checkpoints.waiter import CheckpointExpired, CheckpointRejected
from core.errors import ApplicationError
from core.schemas import validation_errors
from jobs.models import Job, JobStep
from jobs.runtime import (
    ChildJobWaiter,
    ChildrenWaiter,
    FileSpec,
    JobContext,
    JobError,
    JobOptions,
    JobRejected,
    NonRetryableError,
    RetryPolicy,
    handler,
    write_files,
)
from jobs.services import job_cancel, job_create
from workflows import metrics
from workflows.definition import MAX_FOR_EACH_ITEMS, find_list
from workflows.events import EventWaiter, event_send
from workflows.expressions import ExpressionError, condition, evaluate, render
from workflows.models import Trigger, Workflow, WorkflowVersion
from workflows.services import creating_run_job, run_job_creation, workflow_run_start

logger = logging.getLogger(__name__)

HTTP_LIMIT = 100_000


class NodeFailed(NonRetryableError):
    """A node failed for good (its retries spent); the run fails unless tolerated."""

    def __init__(self, node_id: str, error: dict[str, Any]) -> None:
        super().__init__(f"node {node_id} failed: {error.get('message', '')}")
        self.node_id = node_id
        self.error = error


class NodeRetry(Exception):
    """A failed attempt of a node that its retry policy tries again."""


class WorkflowRejected(JobRejected):
    """An approval was rejected and nothing lets the flow go on without it."""


class NodeError(Exception):
    """A node's own failure with details the flow may read (`retry_if`, `steps.x.error`)."""

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.data = data


@dataclass(frozen=True)
class Spec:
    """A version's definition and names, read once per process (versions never change)."""

    version_id: int
    checksum: str
    number: int
    workflow_id: int
    organization_id: int
    slug: str
    definition: dict[str, Any]


def spec_for(input: dict[str, Any]) -> Spec:
    """The version a run's (or branch's) input names."""
    return spec_of(int(input["version"]), str(input.get("checksum", "")))


@lru_cache(maxsize=256)
def spec_of(version_id: int, checksum: str) -> Spec:
    """Cached by id and checksum: an id alone could name another definition after the
    database was restored or recreated under a running worker."""
    versions = WorkflowVersion.objects.select_related("workflow").filter(pk=version_id)
    version = (versions.filter(checksum=checksum) if checksum else versions).get()
    return Spec(
        version.pk,
        version.checksum,
        version.number,
        version.workflow_id,
        version.workflow.organization_id,
        version.workflow.slug,
        version.definition,
    )


@dataclass
class Scope:
    """What expressions see: the run's input, its variables, the nodes that ran."""

    input: dict[str, Any]
    vars: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    event: dict[str, Any]
    run: dict[str, Any]
    item: Any = None
    index: int | None = None
    error: dict[str, Any] | None = None

    def context(self, **extra: Any) -> dict[str, Any]:
        return {**self.snapshot(), "error": self.error, **extra}

    def snapshot(self) -> dict[str, Any]:
        """What a branch starts from (an error is only ever its own)."""
        return {
            "input": self.input,
            "vars": self.vars,
            "steps": self.steps,
            "event": self.event,
            "run": self.run,
            "item": self.item,
            "index": self.index,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> "Scope":
        return cls(**data)


@dataclass
class Walk:
    """One job's walk over node lists of one version."""

    ctx: JobContext
    spec: Spec
    root: str  # the run's job id (a branch's root)
    # The model usage of the nodes recorded so far, by step key (an iteration's nodes
    # have keys of their own, so none overwrites another's).
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Call:
    """One node about to run."""

    walk: Walk
    node: dict[str, Any]
    scope: Scope
    key: str  # its step key
    prefix: str  # of its key: its iteration, inside an inline for_each
    path: list[Any]  # where the node is in the definition
    tolerated: bool  # its failure is recorded, not fatal (continue_on_error here or above)
    config: dict[str, Any] = field(init=False)
    skip_error: ExpressionError | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.config = self.node.get("config") or {}

    @property
    def ctx(self) -> JobContext:
        return self.walk.ctx

    def sub(self, part: str) -> str:
        return f"{self.key}:{part}"


# A NUL or a lone UTF-16 surrogate (not half of a pair), escaped in JSON text:
# PostgreSQL stores neither.
UNSTORABLE_ESCAPE = re.compile(
    r"\\u0000"
    r"|\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _storable(text: str) -> str:
    """Text from outside (a response, a reply) as PostgreSQL stores it: a NUL or a lone
    surrogate, raw or escaped as JSON, becomes U+FFFD (so JSON parsed from the text has
    none either)."""
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return UNSTORABLE_ESCAPE.sub("\\\\ufffd", text)


def _error(exc: BaseException) -> dict[str, Any]:
    data = getattr(exc, "data", {})
    return {"message": str(exc)[:2000], "type": type(exc).__name__, **data}


def _record(
    status: str,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
    input: Any = None,
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "status": status,
        "output": output,
        "error": error,
        "input": input,
        "usage": usage,
        **extra,
    }


# --- how nodes are memoized ----------------------------------------------------------------


def step_node(
    call: Call, compute: Callable[[], tuple[Any, Any, dict[str, Any] | None]]
) -> dict[str, Any]:
    """A node that is one step: `compute()` gives (input as evaluated, output, usage)."""
    retry = call.node.get("retry") or {}
    attempts = int(retry.get("attempts", 1))
    policy = (
        RetryPolicy(
            max_attempts=attempts,
            backoff=float(retry.get("backoff", 2.0)),
            backoff_max=float(retry.get("max_backoff", 300.0)),
        )
        if attempts > 1
        else None
    )

    def body() -> dict[str, Any]:
        started = time.monotonic()
        try:
            rendered, output, usage = compute()
        except Exception as exc:
            error = _error(exc)
            if call.ctx.attempt(call.key) < attempts and _worth_retrying(call, retry, error):
                raise NodeRetry(error["message"]) from exc
            return _fail(call, error, started)
        metrics.node_finished(call.walk.spec.slug, call.node["type"], time.monotonic() - started)
        return _record("succeeded", input=rendered, output=output, usage=usage)

    return call.ctx.step(call.key, body, retry=policy)


def _worth_retrying(call: Call, retry: dict[str, Any], error: dict[str, Any]) -> bool:
    """`retry_if` decides; without it, every error but one marked not retryable (a
    refused request, a bad key) is retried."""
    if "retry_if" not in retry:
        return error.get("retryable") is not False
    try:
        return condition(retry["retry_if"], call.scope.context(error=error))
    except ExpressionError:
        return False


def _fail(
    call: Call,
    error: dict[str, Any],
    started: float | None = None,
    seconds: float | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of a failed node, memoized like any other: a replay (on_failure nodes
    that wait, a resume) raises its failure again without running it. `fatal` when the
    failure is not tolerated: the run fails here, and a retry of the run starts again at
    this node (see retries.py)."""
    if started is not None:
        seconds = time.monotonic() - started
    if seconds is not None:
        metrics.node_finished(call.walk.spec.slug, call.node["type"], seconds)
    if call.tolerated:
        return _record("failed", error=error, usage=usage)
    return _record("failed", error=error, usage=usage, fatal=True)


def finish(call: Call, status: str, **fields: Any) -> dict[str, Any]:
    """The record step of a node that waited or started children first."""

    def body() -> dict[str, Any]:
        first = JobStep.objects.filter(
            job_id=call.ctx.job.pk, key__startswith=call.sub("")
        ).aggregate(first=Min("started_at"))["first"]
        seconds = (timezone.now() - first).total_seconds() if first else 0.0
        if status == "failed":
            error = fields.get("error") or {"message": "failed"}
            return _fail(call, error, seconds=seconds, usage=fields.get("usage"))
        metrics.node_finished(call.walk.spec.slug, call.node["type"], seconds)
        return _record(status, **fields)

    return call.ctx.step(call.key, body)


def input_step(call: Call, make: Callable[[], Any]) -> Any:
    """The node's configuration as evaluated, memoized before it waits; None (and the
    node failed) if it cannot be evaluated."""

    def body() -> dict[str, Any]:
        try:
            return {"value": make()}
        except ExpressionError as exc:
            return {"error": _error(exc)}

    evaluated = call.ctx.step(call.sub("input"), body)
    return evaluated


# --- the walk ----------------------------------------------------------------------------


def run_nodes(
    walk: Walk,
    nodes: list[dict[str, Any]],
    scope: Scope,
    prefix: str,
    path: list[Any],
    tolerated: bool,
) -> Any:
    """Run a node list in sequence; the last node's output."""
    output = None
    for index, node in enumerate(nodes):
        output = run_node(walk, node, scope, prefix, [*path, index], tolerated)
    return output


def run_node(
    walk: Walk, node: dict[str, Any], scope: Scope, prefix: str, path: list[Any], tolerated: bool
) -> Any:
    key = f"{prefix}{node['id']}"
    call = Call(
        walk, node, scope, key, prefix, path, tolerated or bool(node.get("continue_on_error"))
    )
    skip = _skipped(call) if "skip_if" in node else False
    if skip is None:  # the condition failed: so did the node
        failure = _error(call.skip_error or ExpressionError("skip_if failed"))
        record = walk.ctx.step(key, lambda: _fail(call, failure))
    elif skip:
        record = walk.ctx.step(key, lambda: _record("skipped"))
    else:
        record = NODES[node["type"]](call)
    scope.steps[node["id"]] = {key: record[key] for key in ("status", "output", "error", "usage")}
    if node["type"] == "transform" and record["status"] == "succeeded":
        scope.vars.update(record["output"])
    if record.get("usage"):
        walk.usage[key] = record["usage"]
        _record_usage(walk)
    if record["status"] == "failed" and not node.get("continue_on_error"):
        raise NodeFailed(node["id"], record["error"] or {})
    if record["status"] == "rejected" and not node.get("continue_on_error"):
        raise WorkflowRejected(f"node {node['id']}: {record['output'].get('reason', '')}")
    return record["output"]


def _skipped(call: Call) -> bool | None:
    """Whether `skip_if` holds; None when it cannot be evaluated (the node is then
    recorded as failed, not run)."""
    try:
        return condition(call.node["skip_if"], call.scope.context())
    except ExpressionError as exc:
        call.skip_error = exc
        return None


def _record_usage(walk: Walk) -> None:
    """The job's tokens and cost: the sum of its nodes' (recomputed, never incremented);
    the cost is unknown (null) when one node's is."""
    usages = list(walk.usage.values())
    costs = [u.get("cost") for u in usages]
    Job.objects.filter(pk=walk.ctx.job.pk).update(
        tokens_in=sum(int(u.get("tokens_in") or 0) for u in usages),
        tokens_out=sum(int(u.get("tokens_out") or 0) for u in usages),
        cost=None if any(c is None for c in costs) else sum(float(c or 0) for c in costs),
    )


def _jobs_usage(ids: list[str]) -> dict[str, Any] | None:
    """What child jobs (branches, iterations, a sub-workflow) spent, failed ones too."""
    total = Job.objects.filter(pk__in=ids).aggregate(
        tokens_in=Sum("tokens_in"), tokens_out=Sum("tokens_out"), cost=Sum("cost")
    )
    if not (total["tokens_in"] or total["tokens_out"] or total["cost"]):
        return None
    return {**total, "cost": None if total["cost"] is None else float(total["cost"])}


# --- node types ----------------------------------------------------------------------------


def transform(call: Call) -> dict[str, Any]:
    def compute() -> tuple[Any, Any, None]:
        context = call.scope.context()
        values = {name: evaluate(source, context) for name, source in call.config["set"].items()}
        return None, values, None

    return step_node(call, compute)


def branch(call: Call) -> dict[str, Any]:
    context = call.scope.context()
    chosen: int | None = None
    try:
        for index, case in enumerate(call.config["cases"]):
            if condition(case["when"], context):
                chosen = index
                break
    except ExpressionError as exc:
        return finish(call, "failed", error=_error(exc))
    nodes = (
        call.config["cases"][chosen]["nodes"]
        if chosen is not None
        else call.config.get("default", [])
    )
    where = ["config", "cases", chosen, "nodes"] if chosen is not None else ["config", "default"]
    try:
        output = run_nodes(
            call.walk, nodes, call.scope, call.prefix, [*call.path, *where], call.tolerated
        )
    except NodeFailed as failed:
        if not call.node.get("continue_on_error"):
            raise
        return finish(call, "failed", error=failed.error)
    return finish(call, "succeeded", output=output, case=chosen)


def sleep(call: Call) -> dict[str, Any]:
    call.ctx.sleep(call.sub("wait"), float(call.config["seconds"]))
    return finish(call, "succeeded", output={"slept": call.config["seconds"]})


def approval(call: Call) -> dict[str, Any]:
    evaluated = input_step(
        call,
        lambda: render(
            {
                "title": call.config["title"],
                "description": call.config.get("description", ""),
                "payload": call.config.get("payload", {}),
            },
            call.scope.context(),
        ),
    )
    if "error" in evaluated:
        return finish(call, "failed", error=evaluated["error"])
    shown = evaluated["value"]
    payload = (
        shown["payload"] if isinstance(shown["payload"], dict) else {"value": shown["payload"]}
    )
    try:
        decision = call.ctx.checkpoint(
            call.sub("wait"),
            title=str(shown["title"])[:300],
            description=str(shown["description"]),
            payload=payload,
            required_approvals=call.config.get("required_approvals", 1),
            expires_in=call.config.get("expires_in"),
            on_timeout=call.config.get("on_timeout", "reject"),
        )
    except CheckpointRejected as rejected:
        return _rejection(call, shown, rejected)
    except CheckpointExpired as expired:
        return finish(call, "failed", input=shown, error=_error(expired))
    return finish(
        call,
        "succeeded",
        input=shown,
        output={
            "approved": True,
            "payload": decision.payload,
            "edited": decision.edited,
            "decided_by": decision.decided_by,
            "reason": decision.reason,
            "timed_out": decision.timed_out,
            "checkpoint_id": decision.checkpoint_id,
        },
    )


def _rejection(call: Call, shown: Any, rejected: CheckpointRejected) -> dict[str, Any]:
    """The record of an approval or input a person rejected (or that timed out so)."""
    return finish(
        call,
        "rejected",
        input=shown,
        output={
            "approved": False,
            "reason": rejected.reason,
            "decided_by": rejected.decided_by,
            "timed_out": rejected.timed_out,
            "checkpoint_id": rejected.checkpoint_id,
        },
    )


def input_node(call: Call) -> dict[str, Any]:
    evaluated = input_step(
        call,
        lambda: render(
            {"title": call.config["title"], "description": call.config.get("description", "")},
            call.scope.context(),
        ),
    )
    if "error" in evaluated:
        return finish(call, "failed", error=evaluated["error"])
    shown = evaluated["value"]
    try:
        decision = call.ctx.checkpoint(
            call.sub("wait"),
            kind="input",
            title=str(shown["title"])[:300],
            description=str(shown["description"]),
            input_schema=call.config["schema"],
            expires_in=call.config.get("expires_in"),
            on_timeout=call.config.get("on_timeout", "reject"),
        )
    except CheckpointRejected as rejected:
        return _rejection(call, shown, rejected)
    except CheckpointExpired as expired:
        return finish(call, "failed", input=shown, error=_error(expired))
    return finish(call, "succeeded", input=shown, output=decision.data)


def wait_for_event(call: Call) -> dict[str, Any]:
    context = call.scope.context()
    timeout = call.config.get("timeout", call.node.get("timeout"))
    waiter = EventWaiter(
        name=call.config["event"],
        run_id=call.walk.root,
        match=call.config.get("match", ""),
        context={k: context[k] for k in ("input", "vars", "steps", "run", "item", "index")},
        timeout=timeout,
    )
    resolved = call.ctx.wait(call.sub("wait"), waiter)
    if resolved["timed_out"]:
        if call.config.get("on_timeout", "fail") == "continue":
            return finish(call, "succeeded", output=None, timed_out=True)
        return finish(
            call,
            "failed",
            error={
                "message": f"no {call.config['event']} event within {timeout}s",
                "type": "Timeout",
            },
        )
    return finish(call, "succeeded", output=resolved["event"])


def emit_event(call: Call) -> dict[str, Any]:
    def compute() -> tuple[Any, Any, None]:
        data = render(call.config.get("data", {}), call.scope.context())
        job = call.ctx.job
        event, _ = event_send(
            organization=job.organization,
            name=call.config["event"],
            data=data,
            # a re-run of this step after a crash must not send it twice
            idempotency_key=f"emit:{call.ctx.job_id}:{call.key}",
            source=f"workflow:{call.walk.spec.slug}",
            depth=int(call.scope.run.get("depth") or 0) + 1,
            created_by=job.created_by,
        )
        return {"event": call.config["event"], "data": data}, {"event_id": str(event.pk)}, None

    return step_node(call, compute)


def http(call: Call) -> dict[str, Any]:
    def compute() -> tuple[Any, Any, None]:
        context = call.scope.context()
        url = str(render(call.config["url"], context))
        headers = {k: str(v) for k, v in render(call.config.get("headers", {}), context).items()}
        body = render(call.config["body"], context) if "body" in call.config else None
        data = None
        if isinstance(body, str):
            data = body.encode()
        elif body is not None:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        method = call.config.get("method", "GET")
        try:
            response = http_call(
                method,
                url,
                headers=headers,
                body=data,
                timeout=call.node.get("timeout"),
                limit=call.config.get("max_bytes", HTTP_LIMIT),
            )
        except HttpFailed as exc:
            raise NodeError(str(exc), status=None) from exc
        text = _storable(response.body.decode(errors="replace"))
        if response.status >= 400:
            raise NodeError(
                f"HTTP {response.status} from {url}", status=response.status, body=text[:1000]
            )
        try:
            parsed = json.loads(text) if "json" in response.content_type else None
        except ValueError:
            parsed = None
        output = {
            "status": response.status,
            "headers": response.headers,
            "json": parsed,
            "text": None if parsed is not None else text,
            "truncated": response.truncated,
        }
        return {"method": method, "url": url}, output, None

    return step_node(call, compute)


def _agent(call: Call) -> Agent:
    reference = call.config["agent"]
    agents = Agent.objects.alive().filter(organization_id=call.ctx.job.organization_id)
    agent = (
        agents.filter(pk=reference) if isinstance(reference, int) else agents.filter(name=reference)
    ).first()
    if agent is None:
        raise NodeError(f"no agent {reference!r} in this organization")
    return agent


def _usage(out: dict[str, Any]) -> dict[str, Any]:
    completion = out["completion"]
    return {
        "tokens_in": completion["tokens_in"],
        "tokens_out": completion["tokens_out"],
        "cost": out["cost"],
    }


FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def llm(call: Call) -> dict[str, Any]:
    def compute() -> tuple[Any, Any, dict[str, Any]]:
        context = call.scope.context()
        if "agent" in call.config:
            agent = _agent(call)
        else:
            agent = Agent(
                provider=call.config["provider"],
                model=call.config["model"],
                parameters=call.config.get("parameters", {}),
                name="llm node",
            )
        prompt = str(render(call.config["prompt"], context))
        messages = [{"role": "user", "content": prompt}]
        if "system" in call.config:
            messages.insert(
                0, {"role": "system", "content": str(render(call.config["system"], context))}
            )
        try:
            out = call_model(agent, messages, [], turn=1, emit=call.ctx.emit)
        except ProviderError as exc:
            raise NodeError(str(exc), retryable=exc.retryable) from exc
        except NonRetryableError as exc:  # the provider refused (bad key, bad model)
            raise NodeError(str(exc), retryable=False) from exc
        text = _storable(out["completion"]["text"])
        output: Any = text
        if "output_schema" in call.config:
            fenced = FENCE.search(text)
            try:
                output = json.loads(fenced.group(1) if fenced else text)
            except ValueError as exc:
                raise NodeError(f"the reply is not JSON: {exc}", reply=text[:500]) from exc
            problems = [m for _, m in validation_errors(call.config["output_schema"], output)]
            if problems:
                raise NodeError(
                    f"the reply does not match output_schema: {problems[0]}", reply=text[:500]
                )
        return {"prompt": prompt}, output, _usage(out)

    return step_node(call, compute)


def image(call: Call) -> dict[str, Any]:
    def compute() -> tuple[Any, Any, None]:
        prompt = str(render(call.config["prompt"], call.scope.context()))
        size = call.config.get("size", "256x256")
        provider_name = call.config.get("provider", "offline")
        try:
            picture = get_provider(provider_name).generate_image(
                model=call.config.get(
                    "model", "dall-e-2" if provider_name != "offline" else "offline-image"
                ),
                prompt=prompt,
                size=size,
            )
        except ProviderError as exc:
            raise NodeError(str(exc), retryable=exc.retryable) from exc
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", call.key)
        written = write_files(call.ctx.workspace, [FileSpec(f"images/{name}.png", picture.data)])
        return (
            {"prompt": prompt, "size": size},
            {
                "path": written[0]["path"],
                "bytes": written[0]["bytes"],
                "sha256": written[0]["sha256"],
                "model": picture.model,
            },
            None,
        )

    return step_node(call, compute)


def _child_record(call: Call, child: dict[str, Any], describe: str) -> dict[str, Any]:
    if child["status"] == "succeeded":
        return {}
    return {
        "message": f"{describe} {child['status']}: {child['error'] or ''}".strip(),
        "type": "ChildFailed",
        "status": child["status"],
        "job_id": child.get("job_id"),
    }


def agent_node(call: Call) -> dict[str, Any]:
    def start() -> dict[str, Any]:
        try:
            agent = _agent(call)
            context = call.scope.context()
            child_input: dict[str, Any] = {
                "agent_id": agent.pk,
                "task": str(render(call.config["task"], context)),
            }
            if "context" in call.config:
                child_input["context"] = render(call.config["context"], context)
            if "max_tokens" in call.config:
                child_input["max_tokens"] = call.config["max_tokens"]
            child = job_create(
                job_type="agent-task",
                input=child_input,
                parent=call.ctx.job,
                organization=call.ctx.job.organization,
                created_by=call.ctx.job.created_by,
                idempotency_key=f"agent:{call.ctx.job_id}:{call.key}",
            )
        except (NodeError, ExpressionError, JobError) as exc:
            return {"error": _error(exc)}
        return {"job_id": str(child.pk), "input": child_input}

    started = call.ctx.step(call.sub("start"), start)
    if "error" in started:
        return finish(call, "failed", error=started["error"])
    child = call.ctx.wait(call.sub("wait"), ChildJobWaiter(job_id=started["job_id"]))
    if failure := _child_record(call, child, "the agent's job"):
        return finish(call, "failed", input=started["input"], error=failure)
    result = child["result"] or {}
    return finish(
        call,
        "succeeded",
        input=started["input"],
        output=result,
        child_job=started["job_id"],
        usage={
            "tokens_in": result.get("tokens_in", 0),
            "tokens_out": result.get("tokens_out", 0),
            "cost": result.get("cost"),
        },
    )


def workflow_node(call: Call) -> dict[str, Any]:
    def start() -> dict[str, Any]:
        try:
            workflow = Workflow.objects.get(
                organization_id=call.ctx.job.organization_id, slug=call.config["workflow"]
            )
            child_input = render(call.config.get("input", {}), call.scope.context())
            run = workflow_run_start(
                workflow=workflow,
                input=child_input,
                parent=call.ctx.job,
                created_by=call.ctx.job.created_by,
                trigger=Trigger.WORKFLOW,
                idempotency_key=f"workflow:{call.ctx.job_id}:{call.key}",
            )
        except Workflow.DoesNotExist:
            return {
                "error": {"message": f"no workflow {call.config['workflow']!r}", "type": "NotFound"}
            }
        except (ExpressionError, ApplicationError) as exc:  # inactive, a refused input, …
            return {"error": _error(exc)}
        return {"job_id": str(run.job_id), "input": child_input}

    started = call.ctx.step(call.sub("start"), start)
    if "error" in started:
        return finish(call, "failed", error=started["error"])
    child = call.ctx.wait(call.sub("wait"), ChildJobWaiter(job_id=started["job_id"]))
    usage = _jobs_usage([started["job_id"]])
    if failure := _child_record(call, child, f"workflow {call.config['workflow']}"):
        return finish(call, "failed", input=started["input"], error=failure, usage=usage)
    result = child["result"] or {}
    return finish(
        call,
        "succeeded",
        input=started["input"],
        output=result.get("output"),
        child_job=started["job_id"],
        usage=usage,
    )


def _start_branches(
    call: Call, lists: list[tuple[list[Any], Scope]], tag: str
) -> list[str] | dict[str, Any]:
    """Child jobs running node lists of this version (parallel branches, iterations):
    their ids, or {"error"} if they could not be created (all or none)."""
    try:
        with transaction.atomic(), run_job_creation():
            return _create_branches(call, lists, tag)
    except JobError as exc:  # nested too deep, …: the node fails, as any other failure
        return {"error": _error(exc)}


def _create_branches(call: Call, lists: list[tuple[list[Any], Scope]], tag: str) -> list[str]:
    job = call.ctx.job
    ids = []
    for index, (path, scope) in enumerate(lists):
        child = job_create(
            job_type="workflow-branch",
            parent=job,
            organization=job.organization,
            created_by=job.created_by,
            idempotency_key=f"branch:{job.pk}:{call.key}:{tag}{index}",
            input={
                "run": call.walk.root,
                "version": call.walk.spec.version_id,
                "checksum": call.walk.spec.checksum,
                "path": path,
                "scope": scope.snapshot(),
                "tolerated": call.tolerated,
            },
        )
        ids.append(str(child.pk))
    return ids


def _stop(call: Call, part: str, running: list[str]) -> None:
    """Cancel children the join no longer needs (any, fail_fast), once."""
    if not running:
        return

    def cancel() -> list[str]:
        for child in Job.objects.filter(pk__in=running):
            try:
                job_cancel(job=child)
            except JobError:  # it ended meanwhile
                continue
        return running

    call.ctx.step(call.sub(part), cancel)


def parallel(call: Call) -> dict[str, Any]:
    branches = call.config["branches"]
    names = [b.get("name") or str(i) for i, b in enumerate(branches)]
    lists = [
        ([*call.path, "config", "branches", i, "nodes"], call.scope) for i in range(len(branches))
    ]
    ids = call.ctx.step(call.sub("start"), lambda: _start_branches(call, lists, ""))
    if isinstance(ids, dict):
        return finish(call, "failed", error=ids["error"])
    join = call.config.get("join", "all")
    joined = call.ctx.wait(
        call.sub("join"),
        ChildrenWaiter(job_ids=ids, join=join, fail_fast=bool(call.config.get("fail_fast"))),
    )
    _stop(call, "stop", joined["running"])
    outputs, failures = {}, []
    for name, pk in zip(names, ids, strict=True):
        child = joined["children"].get(pk)
        if child is None:
            continue  # stopped: the join did not need it
        if child["status"] == "succeeded":
            result = child["result"] or {}
            outputs[name] = result.get("output")
            call.scope.steps.update(result.get("steps", {}))
            call.scope.vars.update(result.get("vars", {}))
        else:
            failures.append(f"branch {name} {child['status']}: {child['error']}".strip())
    failed = bool(failures) if join == "all" else not outputs
    usage = _jobs_usage(ids)
    if failed:
        return finish(
            call,
            "failed",
            output=outputs,
            usage=usage,
            error={
                "message": "; ".join(failures) or "no branch succeeded",
                "type": "BranchFailed",
                "branches": failures,
            },
        )
    return finish(call, "succeeded", output=outputs, children=ids, usage=usage)


def for_each(call: Call) -> dict[str, Any]:
    try:
        items = evaluate(call.config["items"], call.scope.context())
    except ExpressionError as exc:
        return finish(call, "failed", error=_error(exc))
    if not isinstance(items, list) or len(items) > MAX_FOR_EACH_ITEMS:
        return finish(
            call,
            "failed",
            error={
                "message": f"items must be a list of at most {MAX_FOR_EACH_ITEMS}",
                "type": "InvalidItems",
            },
        )
    width = int(call.config.get("max_parallel", 1))
    if width <= 1:
        return _each_inline(call, items)
    return _each_in_waves(call, items, width)


def _iteration(scope: Scope, item: Any, index: int) -> Scope:
    # Its own view of the nodes that ran (an iteration's nodes are its own), the run's
    # variables shared.
    return replace(scope, steps=dict(scope.steps), item=item, index=index)


def _each_inline(call: Call, items: list[Any]) -> dict[str, Any]:
    outputs = []
    nodes = call.config["nodes"]
    for index, item in enumerate(items):
        try:
            outputs.append(
                run_nodes(
                    call.walk,
                    nodes,
                    _iteration(call.scope, item, index),
                    f"{call.key}[{index}]/",
                    [*call.path, "config", "nodes"],
                    call.tolerated,
                )
            )
        except NodeFailed as failed:
            if not call.node.get("continue_on_error"):
                raise
            return finish(call, "failed", output=outputs, error={**failed.error, "index": index})
    return finish(call, "succeeded", output=outputs)


def _each_in_waves(call: Call, items: list[Any], width: int) -> dict[str, Any]:
    outputs: list[Any] = []
    path = [*call.path, "config", "nodes"]
    started: list[str] = []
    for wave, first in enumerate(range(0, len(items), width)):
        chunk = items[first : first + width]
        lists = [(path, _iteration(call.scope, item, first + i)) for i, item in enumerate(chunk)]
        ids = call.ctx.step(
            call.sub(f"start{wave}"), partial(_start_branches, call, lists, f"{wave}.")
        )
        if isinstance(ids, dict):
            return finish(
                call, "failed", output=outputs, error=ids["error"], usage=_jobs_usage(started)
            )
        joined = call.ctx.wait(
            call.sub(f"join{wave}"), ChildrenWaiter(job_ids=ids, join="all", fail_fast=True)
        )
        _stop(call, f"stop{wave}", joined["running"])
        started += ids
        for offset, pk in enumerate(ids):
            child = joined["children"].get(pk)
            if child is None or child["status"] != "succeeded":
                error = {
                    "message": f"iteration {first + offset} "
                    f"{child['status'] if child else 'stopped'}: "
                    f"{(child or {}).get('error') or ''}".strip(),
                    "type": "IterationFailed",
                    "index": first + offset,
                }
                return finish(
                    call, "failed", output=outputs, error=error, usage=_jobs_usage(started)
                )
            outputs.append((child["result"] or {}).get("output"))
    return finish(call, "succeeded", output=outputs, usage=_jobs_usage(started))


NODES: dict[str, Callable[[Call], dict[str, Any]]] = {
    "agent": agent_node,
    "llm": llm,
    "http": http,
    "image": image,
    "branch": branch,
    "parallel": parallel,
    "for_each": for_each,
    "approval": approval,
    "input": input_node,
    "wait_for_event": wait_for_event,
    "emit_event": emit_event,
    "sleep": sleep,
    "workflow": workflow_node,
    "transform": transform,
}


# --- the job types ------------------------------------------------------------------------


def _made_here(input: dict[str, Any], organization: Any) -> Spec:
    """The version of a run's or branch's new job, if this app is creating it, for a
    workflow of the job's organization; else the job is refused."""
    refused = JobError(
        "a workflow run is started through its workflow (POST "
        "/api/v1/workflows/{id}/run/), not as a bare job"
    )
    if not creating_run_job.get():
        raise refused
    try:
        spec = spec_for(input)
    except (KeyError, TypeError, ValueError, WorkflowVersion.DoesNotExist):
        raise refused from None
    if organization is None or spec.organization_id != organization.pk:
        raise refused
    return spec


def branch_options(input: dict[str, Any], organization: Any) -> JobOptions:
    """`prepare` of a branch: only a run makes them."""
    _made_here(input, organization)
    return JobOptions()


def run_options(input: dict[str, Any], organization: Any) -> JobOptions:
    """`prepare` of a run: its concurrency key, from the version's `concurrency`."""
    spec = _made_here(input, organization)
    concurrency = spec.definition.get("concurrency")
    if not concurrency:
        return JobOptions()
    key = f"workflow:{spec.workflow_id}"
    if "key" in concurrency:
        try:
            value = evaluate(concurrency["key"], {"input": input.get("input", {})})
        except ExpressionError as exc:
            raise JobError(f"concurrency key: {exc}", {"concurrency.key": [str(exc)]}) from None
        key += f":{json.dumps(value, sort_keys=True)[:100]}"
    return JobOptions(concurrency_key=key)


def run_limit(key: str) -> int | None:
    """The limit of a workflow's runs: its current version's `concurrency.limit`."""
    workflow_id = key.split(":")[1]
    definition = (
        Workflow.objects.filter(pk=int(workflow_id))
        .values_list("current_version__definition", flat=True)
        .first()
    )
    if definition is None:
        return None
    return int((definition.get("concurrency") or {}).get("limit", 0))


def _root_scope(ctx: JobContext, spec: Spec) -> Scope:
    return Scope(
        input=dict(ctx.input.get("input") or {}),
        vars=dict(spec.definition.get("variables") or {}),
        steps={},
        event=ctx.input.get("event") or {"name": "", "data": {}},
        run={
            "id": ctx.job_id,
            "workflow": spec.slug,
            "version": spec.number,
            "started": ctx.job.created_at.isoformat(),
            "trigger": ctx.input.get("trigger"),
            "depth": int(ctx.input.get("depth") or 0),
        },
    )


@handler("workflow", description="A run of a workflow, node by node.", prepare=run_options)
def run_workflow(ctx: JobContext) -> dict[str, Any]:
    spec = spec_for(ctx.input)
    walk = Walk(ctx, spec, root=ctx.job_id)
    scope = _root_scope(ctx, spec)
    try:
        last = run_nodes(walk, spec.definition["nodes"], scope, "", ["nodes"], False)
    except NodeFailed as failure:
        if spec.definition.get("on_failure"):
            scope.error = {**failure.error, "node": failure.node_id}
            try:
                run_nodes(
                    walk, spec.definition["on_failure"], scope, "on_failure/", ["on_failure"], True
                )
            except (NodeFailed, WorkflowRejected) as also:  # the run's own error is the one
                logger.warning("on_failure of run %s failed too: %s", walk.root, also)
        raise
    try:
        output = (
            render(spec.definition["output"], scope.context())
            if "output" in spec.definition
            else last
        )
    except ExpressionError as exc:
        raise NonRetryableError(f"the workflow's output: {exc}") from None
    return {"output": output, "vars": scope.vars}


@handler(
    "workflow-branch",
    description="A node list of a workflow run, as its child.",
    prepare=branch_options,
)
def run_branch(ctx: JobContext) -> dict[str, Any]:
    spec = spec_for(ctx.input)
    scope = Scope.restore(ctx.input["scope"])
    before = set(scope.steps)
    given = dict(scope.vars)
    nodes = find_list(spec.definition, ctx.input["path"])
    walk = Walk(ctx, spec, root=str(ctx.input["run"]))
    output = run_nodes(
        walk, nodes, scope, "", list(ctx.input["path"]), bool(ctx.input.get("tolerated"))
    )
    return {
        "output": output,
        # only what this branch set: the join merges branches, and an unchanged copy
        # must not undo what another branch set
        "vars": {k: v for k, v in scope.vars.items() if k not in given or given[k] != v},
        "steps": {k: v for k, v in scope.steps.items() if k not in before},
    }
