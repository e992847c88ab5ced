"""Files every layer writes: canonical JSON, stable hashes, one atomic writer.

This module sits at the bottom of the package (it imports only the standard library), so the
harness, the leaderboard, the activation store and the model cache share one way to write a file:

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: a temporary
  file created with ``mkstemp`` in the target folder (never a fixed name, so a planted symlink is
  never followed), flushed and fsynced, then ``os.replace``-d onto the target and the folder
  fsynced. A reader sees the old content or the new one, never a mix; a failed write leaves the
  old file and no temporary.
* :func:`atomic_path`: the same for writers that want a path (``savefig``, ``safetensors``).
* :func:`atomic_dir`: a folder assembled under a temporary name and renamed into place.

Modes follow the umask: ``mkstemp`` creates files 0600 and ``mkdtemp`` folders 0700, so both are
widened to what ``open()`` / ``mkdir()`` would have created (0666 / 0777 minus the umask) before
they become visible; every file the package writes then has the same mode.

Temporary names are ``.<name>.<random>.tmp``: :meth:`ResultStore.clean_temporaries` and friends
recognise leftovers of a killed process by that shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

TMP_SUFFIX = ".tmp"


# -- canonical JSON and hashes -----------------------------------------------------------------
def clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN), tuples become lists,
    keys become strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON text (sorted keys, 2-space indent, trailing newline, NaN/inf as null).

    ``dumps(json.loads(dumps(x))) == dumps(x)``: a stored file re-serializes to its own bytes,
    which is what content hashes of records rely on."""
    return json.dumps(clean(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def stable_hash(obj: Any) -> str:
    """sha256 hex of the canonical JSON of ``obj`` (sorted keys, no whitespace).

    Cell keys, metric keys and set identities are built from it: its bytes must never change
    (``default=str`` included), or every stored cell would be orphaned."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 hex of a file's bytes, read in ``chunk``-byte pieces (~1 s/GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# -- modes and durability ----------------------------------------------------------------------
def current_umask() -> int:
    """The process umask. Read from /proc where possible: ``os.umask`` can only be read by setting
    it, which would race with other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode ``open()`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode ``mkdir()`` gives a new folder: 0777 minus the umask."""
    return 0o777 & ~current_umask()


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (no-op where folders cannot be opened)."""
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


def fsync_file(path: str | Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def is_temporary(name: str) -> bool:
    """True for names of this module's temporaries (``.<name>.<random>.tmp``) and of the
    older ``.<name>.tmp`` / ``.<name>.tmp-<pid>`` ones."""
    return name.startswith(".") and (name.endswith(TMP_SUFFIX) or ".tmp-" in name)


# -- the atomic writer -------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that wants a file name; on success the
    file is fsynced, given the umask's mode and renamed onto ``path``; on any exception it is
    removed and ``path`` keeps its old content.

    >>> with atomic_path("plot.png") as tmp:   # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """:func:`atomic_write_text` of :func:`dumps`."""
    atomic_write_text(path, dumps(obj))


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``final``; when the block ends without an exception,
    every file in it is fsynced and the folder renamed onto ``final`` (an existing ``final`` is
    moved aside first and then deleted). On an exception the temporary folder is deleted and
    ``final`` is untouched. A process killed in between leaves only ``.<name>.*.tmp`` folders."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TMP_SUFFIX, dir=final.parent))
    try:
        yield tmp
        for child in tmp.rglob("*"):  # files written by other libraries: durable before the rename,
            if child.is_file() and not child.is_symlink():  # and with the umask's mode (safetensors
                fsync_file(child)                           # creates 0600 files)
                os.chmod(child, file_mode())
            elif child.is_dir() and not child.is_symlink():
                os.chmod(child, dir_mode())
        os.chmod(tmp, dir_mode())
        old = None
        if final.exists() or final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", suffix=TMP_SUFFIX, dir=final.parent))
            os.rename(final, old / final.name)  # renames a symlink itself, never its target
        os.replace(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
