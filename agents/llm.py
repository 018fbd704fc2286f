"""Calling an agent's model from a job: retries, streamed text as coalesced progress
events, and the tokens and cost of every call summed on the job."""

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings

from agents.models import Agent
from agents.providers.base import Completion, Message, ProviderError, ToolSpec
from agents.providers.pricing import cost
from agents.providers.registry import get_provider
from agents.providers.retry import with_retries
from core import metrics
from jobs.models import Job
from jobs.runtime import NonRetryableError


class LLMRefused(NonRetryableError):
    """The provider said no in a way retrying will not change (bad key, bad model, ...)."""


class StreamCoalescer:
    """Streamed text as `llm.delta` events: at most one per interval, not one per chunk,
    so a fast stream costs a few rows a second. A timer sends what is pending when
    the interval is up, so no text waits for the next chunk to arrive."""

    def __init__(
        self, emit: Callable[[str, dict[str, Any]], None], turn: int, interval: float | None = None
    ) -> None:
        self.emit, self.turn = emit, turn
        self.interval = (
            settings.COUNTERSIGN_STREAM_COALESCE_SECONDS if interval is None else interval
        )
        self.pending: list[str] = []
        self.first_at = 0.0
        self.last = float("-inf")
        self.timer: threading.Timer | None = None
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            if not self.pending:
                self.first_at = time.time()
            self.pending.append(text)
            wait = self.last + self.interval - time.monotonic()
            if wait <= 0:
                self._flush()
            elif self.timer is None:
                self.timer = threading.Timer(wait, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def discard(self) -> None:
        """Drop what is pending (a retried call streams again from the start)."""
        with self.lock:
            self.pending = []

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending:
            # `at`: when the first of these chunks arrived (wall clock), so a reader can
            # measure how long text takes to reach it (bench/streaming.py does).
            self.emit(
                "llm.delta",
                {"turn": self.turn, "text": "".join(self.pending), "at": round(self.first_at, 4)},
            )
            self.pending = []
        self.last = time.monotonic()


def call_model(
    agent: Agent,
    messages: list[Message],
    tools: list[ToolSpec],
    *,
    turn: int,
    emit: Callable[[str, dict[str, Any]], None],
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One completion (retried as the provider allows), as JSON for a memoized step."""
    try:
        provider = get_provider(agent.provider)
    except ProviderError as exc:
        raise LLMRefused(str(exc)) from exc
    parameters = {**agent.parameters, **(overrides or {})}
    stream = StreamCoalescer(emit, turn)

    def retried(attempt: int, error: ProviderError, wait: float) -> None:
        stream.discard()
        emit(
            "llm.retry",
            {
                "turn": turn,
                "attempt": attempt + 1,
                "error": str(error)[:300],
                "wait_seconds": round(wait, 2),
            },
        )

    started = time.monotonic()
    try:
        completion = with_retries(
            lambda: provider.complete(
                model=agent.model,
                messages=messages,
                tools=tools,
                parameters=parameters,
                on_chunk=stream,
            ),
            on_retry=retried,
        )
    except ProviderError as exc:
        if exc.retryable:
            raise  # the step's and the job's retry policies may try again later
        raise LLMRefused(str(exc)) from exc
    stream.flush()
    price = call_cost(agent.provider, completion, agent.model)
    seconds = time.monotonic() - started
    record_call_metrics(agent.provider, agent.model, completion, price, seconds)
    return {
        "completion": completion.as_dict(),
        "provider": agent.provider,
        "cost": None if price is None else str(price),
        "seconds": round(seconds, 3),
    }


def record_call_metrics(
    provider: str, model: str, completion: Completion, price: Decimal | None, seconds: float
) -> None:
    """Labelled by the configured model, not the dated snapshot that answered, so the
    series stay few."""
    metrics.inc(
        "agent_llm_tokens_total",
        completion.tokens_in,
        provider=provider,
        model=model,
        direction="in",
    )
    metrics.inc(
        "agent_llm_tokens_total",
        completion.tokens_out,
        provider=provider,
        model=model,
        direction="out",
    )
    if price is not None:
        metrics.inc("agent_llm_cost_total", float(price), provider=provider, model=model)
    metrics.observe("agent_llm_request_seconds", seconds, provider=provider, model=model)


def call_cost(provider: str, completion: Completion, configured_model: str) -> Decimal | None:
    """Priced by the model that answered, else by the one configured (a dated
    snapshot such as gpt-4o-2024-08-06 may be missing from the table)."""
    for model in (completion.model, configured_model):
        price = cost(provider, model, completion.tokens_in, completion.tokens_out)
        if price is not None:
            return price
    return None


def usage_totals(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens summed; the cost is unknown (None) if any call's cost is."""
    tokens_in = sum(c["completion"]["tokens_in"] for c in calls)
    tokens_out = sum(c["completion"]["tokens_out"] for c in calls)
    costs = [c["cost"] for c in calls]
    total = None if any(c is None for c in costs) else sum((Decimal(c) for c in costs), Decimal(0))
    return {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost": total}


def record_usage(job_id: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Set the job's totals from all its calls so far: recomputed, never incremented,
    so a replayed or retried run cannot count a call twice."""
    totals = usage_totals(calls)
    Job.objects.filter(pk=job_id).update(**totals)
    return totals
