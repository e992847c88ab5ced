"""The results store: checkpoints and per-cell results under one output directory.

Layout::

    <root>/run.json                   the last run's config, cell keys and metric keys
    <root>/events.jsonl               append-only log (one line per finished training)
    <root>/checkpoints/<key>/         SAELens SAE folder (cfg.json, sae_weights.safetensors)
                         train.json   loss/MSE curves, steps, seconds, converged, ...
                         COMPLETE     written last: the folder is usable only when it exists
    <root>/results/<key>.json         cell identity, training summary, per-metric results

Every file is written atomically (temporary file in the same folder, flush + fsync, os.replace),
and a checkpoint folder is assembled under a temporary name and renamed into place after its
``COMPLETE`` marker is written. A process killed at any point leaves either the old state or the
new one, never a half-written file that a later run would trust.

(SAELens writes checkpoints but has no resumable result store for a matrix of runs; this is the
small piece we write by hand.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"
TRAIN_FILE = "train.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON text (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(_clean(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj))


class ResultStore:
    """Checkpoints and results of one output directory (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def checkpoint_dir(self, key: str) -> Path:
        return self.checkpoints / key

    def result_path(self, key: str) -> Path:
        return self.results / f"{key}.json"

    # -- checkpoints ---------------------------------------------------------------------------
    def has_checkpoint(self, key: str) -> bool:
        return (self.checkpoint_dir(key) / MARKER).is_file()

    def write_checkpoint(self, key: str, save_fn: Any, train_info: dict[str, Any]) -> Path:
        """Assemble a checkpoint folder: ``save_fn(tmp_dir)`` writes the SAE, then ``train.json``
        and the marker are written and the folder is renamed into place."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=self.checkpoints))
        try:
            save_fn(tmp)
            atomic_write_json(tmp / TRAIN_FILE, train_info)
            for child in tmp.iterdir():  # sae-lens's own files: make them durable before the marker
                if child.is_file():
                    with open(child, "rb") as fh:
                        os.fsync(fh.fileno())
            atomic_write_text(tmp / MARKER, key + "\n")
            if final.exists():  # an incomplete leftover (no marker) or a --force redo
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.checkpoints)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def clean_temporaries(self) -> int:
        """Remove temporary files/folders left by a killed process (call before a run starts,
        never while another process writes to this store). Returns how many were removed."""
        n = 0
        for folder in (self.checkpoints, self.results, self.root):
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if child.name.startswith(".") and child.name.endswith(".tmp"):
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
                    n += 1
        return n

    def load_train_info(self, key: str) -> dict[str, Any]:
        return json.loads((self.checkpoint_dir(key) / TRAIN_FILE).read_text(encoding="utf-8"))

    # -- results -------------------------------------------------------------------------------
    def load_result(self, key: str) -> dict[str, Any] | None:
        path = self.result_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # cannot happen with atomic writes; treat as absent
            return None

    def write_result(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.result_path(key), record)

    def iter_results(self) -> list[dict[str, Any]]:
        if not self.results.is_dir():
            return []
        out = []
        for path in sorted(self.results.glob("*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                continue
        return out

    # -- run manifest and event log ------------------------------------------------------------
    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.root / "run.json", info)

    def load_run(self) -> dict[str, Any] | None:
        path = self.root / "run.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def log_event(self, event: dict[str, Any]) -> None:
        """Append one JSON line to ``events.jsonl`` (O_APPEND: whole lines, also from workers)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(_clean(event), sort_keys=True) + "\n").encode()
        fd = os.open(self.root / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """Logged events; a torn last line (killed mid-write) is ignored."""
        path = self.root / "events.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def trainings(self) -> dict[str, int]:
        """How many times each training key finished training (from the event log)."""
        counts: dict[str, int] = {}
        for ev in self.events():
            if ev.get("event") == "trained":
                counts[ev["key"]] = counts.get(ev["key"], 0) + 1
        return counts
