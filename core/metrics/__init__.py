"""Prometheus metrics of jobs, checkpoints and model calls (see definitions.py)."""

from core.metrics.recorder import batched, inc, observe

__all__ = ["batched", "inc", "observe"]
