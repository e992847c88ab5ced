"""Metrics, one module per family. Each module holds pure functions (tensors in, numbers out);
``builtin`` wraps them as registered ``MetricSpec``s that read what they need from a
``MetricContext``."""
