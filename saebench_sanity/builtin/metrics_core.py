"""Registered metrics_core metrics (list filled by its owner)."""

METRICS: list = []
