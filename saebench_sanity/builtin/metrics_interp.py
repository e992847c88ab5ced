"""Registered metrics_interp metrics (list filled by its owner)."""

METRICS: list = []
