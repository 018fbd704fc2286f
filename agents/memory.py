"""An agent's memory: the recent conversation of a session (Message rows, trimmed to
the context budget) and long-term memories found by embedding similarity.

The embedder is offline and deterministic (feature hashing of words and word pairs
into a fixed-size unit vector), so similarity search works with no model and no
network. Similarity is computed in Python over the agent's newest memories: portable
to any database, and fast enough for thousands of memories per agent."""

import hashlib
import math
import re
from typing import Any

from agents.models import Agent, Memory, Message, MessageRole
from jobs.models import Job

DIMENSIONS = 256
SEARCH_WINDOW = 5000  # newest memories compared per search
WORD = re.compile(r"\w+", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough to budget a prompt."""
    return max(1, len(text) // 4) if text else 0


def embed(text: str) -> list[float]:
    words = [w.lower() for w in WORD.findall(text)]
    features = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    vector = [0.0] * DIMENSIONS
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % DIMENSIONS
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [round(v / norm, 6) for v in vector] if norm else vector


def remember(agent: Agent, content: str, *, job: Job | None = None) -> Memory:
    return Memory.objects.create(
        agent=agent, content=content, embedding=embed(content), source_job=job
    )


def search(agent: Agent, query: str, limit: int = 5) -> list[dict[str, Any]]:
    """The memories most similar to `query`, best first, with their scores."""
    wanted = embed(query)
    scored = []
    for memory in Memory.objects.filter(agent=agent).only("content", "embedding")[:SEARCH_WINDOW]:
        score = sum(a * b for a, b in zip(wanted, memory.embedding, strict=False))
        if score > 0:
            scored.append((score, memory))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [{"id": m.pk, "content": m.content, "score": round(s, 4)} for s, m in scored[:limit]]


def history(agent: Agent, session_id: str, *, budget_tokens: int) -> list[dict[str, Any]]:
    """The session's latest messages, oldest first, as many as fit in `budget_tokens`
    (and at most `agent.history_messages`). A tool result is never kept without the
    assistant message that asked for it."""
    if not session_id or agent.history_messages == 0:
        return []
    rows = list(
        Message.objects.filter(agent=agent, session_id=session_id).order_by("-id")[
            : agent.history_messages
        ]
    )
    kept: list[Message] = []
    used = 0
    for row in rows:  # newest first
        cost = estimate_tokens(row.content) + estimate_tokens(str(row.tool_calls or ""))
        if used + cost > budget_tokens:
            break
        kept.append(row)
        used += cost
    kept.reverse()
    while kept and kept[0].role == MessageRole.TOOL:
        kept.pop(0)  # its assistant message fell outside the budget
    return [as_message(row) for row in kept]


def as_message(row: Message) -> dict[str, Any]:
    message: dict[str, Any] = {"role": row.role, "content": row.content}
    if row.tool_calls:
        message["tool_calls"] = row.tool_calls
    if row.tool_call_id:
        message["tool_call_id"] = row.tool_call_id
    return message


def record(agent: Agent, session_id: str, job: Job, messages: list[dict[str, Any]]) -> None:
    Message.objects.bulk_create(
        Message(
            agent=agent,
            session_id=session_id,
            job=job,
            role=m["role"],
            content=m.get("content") or "",
            tool_calls=m.get("tool_calls") or [],
            tool_call_id=m.get("tool_call_id", ""),
        )
        for m in messages
    )
