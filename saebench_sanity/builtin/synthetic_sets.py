"""Registered synthetic_sets (list filled by its owner)."""

SETS: list = []
