"""Model-call metrics: tokens, cost and latency by provider and configured model."""

from core.metrics import Metric, register_metrics

LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

register_metrics(
    Metric(
        "agent_llm_tokens_total",
        "counter",
        ("provider", "model", "direction"),
        "Model tokens, `in` (prompt) and `out` (completion).",
    ),
    Metric(
        "agent_llm_cost_total",
        "counter",
        ("provider", "model"),
        "Model cost in US dollars, from the price table (calls of unknown price add nothing).",
    ),
    Metric(
        "agent_llm_request_seconds",
        "histogram",
        ("provider", "model"),
        "Seconds one model call took, retries included.",
        LLM_BUCKETS,
    ),
)
