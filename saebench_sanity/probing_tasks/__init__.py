"""Labelled text tasks for sparse probing: the task contract (``base``), the built-in offline
tasks built from text that installed packages ship (``builtin``) and SAEBench's hub tasks loaded
by name through ``datasets`` (``hub``). Nothing here imports torch at package import time."""
