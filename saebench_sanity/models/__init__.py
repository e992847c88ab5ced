"""Language models for real activation sets: loading (``loading``), the embedded offline default
model (``default_model``) and readable hook points (``hook_points``).

Nothing here imports torch or transformers at package import time.
"""
