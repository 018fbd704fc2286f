"""Prometheus metrics, correct across processes and hosts. Apps register their metrics
(`register_metrics`) and gauge collectors (`register_collector`) and record with `inc`
and `observe`; `/metrics` (views.py) renders them all."""

from core.metrics.recorder import batched, inc, observe
from core.metrics.registry import Metric, register_collector, register_metrics

__all__ = ["Metric", "batched", "inc", "observe", "register_collector", "register_metrics"]
