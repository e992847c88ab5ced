"""On-disk prompt -> answer cache for judges, so a re-run costs nothing.

One SQLite file (stdlib ``sqlite3``; safe across threads and processes) keyed by the sha256 of
what the judge says identifies an answer: for the HTTP judge its identity, its endpoint (two
servers serving one model name never share answers), the messages and the generation parameters
(``OpenAICompatibleJudge.cache_key``). Only successful answers are stored; errors are never
cached; the stored request holds no key or credential-bearing URL.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from saebench_sanity.activations.base import stable_hash


def default_cache_path() -> Path:
    from saebench_sanity.models.default_model import cache_root

    return cache_root() / "judges" / "answers.sqlite"


class PromptCache:
    """``get(key_obj) -> str | None`` / ``put(key_obj, answer)``; ``key_obj`` is any JSON-ready
    object (hashed with ``stable_hash``). ``hits`` / ``misses`` count lookups."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, request TEXT, answer TEXT)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    @staticmethod
    def key(obj: Any) -> str:
        return stable_hash(obj)

    def get(self, obj: Any) -> str | None:
        k = self.key(obj)
        with self._lock, self._connect() as con:
            row = con.execute("SELECT answer FROM answers WHERE key = ?", (k,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0]

    def put(self, obj: Any, answer: str) -> None:
        k = self.key(obj)
        with self._lock, self._connect() as con:
            con.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (k, json.dumps(obj, sort_keys=True), answer))
