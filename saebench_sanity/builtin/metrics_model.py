"""Registered metrics_model metrics (list filled by its owner)."""

METRICS: list = []
