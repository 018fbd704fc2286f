"""Prometheus metrics of jobs, checkpoints and model calls (see definitions.py)."""

from agents.metrics.recorder import batched, inc, observe

__all__ = ["batched", "inc", "observe"]
