"""The job, checkpoint and model metrics: names, kinds, labels and buckets.

Counters and histograms are recorded where things happen (any web, worker or beat
process, on any host) into one Redis hash per metric, and rendered from there by
`/metrics`; gauges are read from the database when scraped. See docs/operations.md.
"""

from dataclasses import dataclass

# Seconds: from a sub-second step to a job that waited a day for a person.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
                    14400, 86400)
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DECISION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 8 * 3600, 86400,
                    3 * 86400, 7 * 86400)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" or "histogram"
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("agent_jobs_total", "counter", ("job_type", "status"),
           "Jobs reaching each status (a job reaching `running` or `waiting` again counts again)."),
    Metric("agent_jobs_duration_seconds", "histogram", ("job_type", "status"),
           "Seconds from a job's first start to its end, by final status.", DURATION_BUCKETS),
    Metric("agent_job_steps_total", "counter", ("job_type", "status"),
           "Step executions that finished, by outcome (replayed steps are not counted)."),
    Metric("agent_step_duration_seconds", "histogram", ("job_type",),
           "Seconds one step execution took.", STEP_BUCKETS),
    Metric("agent_checkpoints_total", "counter", ("kind", "status"),
           "Checkpoints reaching each status (`pending` when opened)."),
    Metric("agent_checkpoint_decision_seconds", "histogram", ("kind",),
           "Seconds from a checkpoint's opening to its decision.", DECISION_BUCKETS),
    Metric("agent_llm_tokens_total", "counter", ("provider", "model", "direction"),
           "Model tokens, `in` (prompt) and `out` (completion)."),
    Metric("agent_llm_cost_total", "counter", ("provider", "model"),
           "Model cost in US dollars, from the price table (calls of unknown price add nothing)."),
    Metric("agent_llm_request_seconds", "histogram", ("provider", "model"),
           "Seconds one model call took, retries included.", LLM_BUCKETS),
]}
