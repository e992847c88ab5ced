"""Paths built from names that come from outside the code: run names, activation-set names in
result records, plugin names, cell keys. Every such name becomes a path only through this module.

* :func:`safe_name` accepts a name only if it is one plain path component: non-empty, no ``/``
  or ``\\``, not ``.`` or ``..``, no leading ``.`` (reserved for temporaries, which
  ``clean_temporaries`` deletes), no control characters, at most 200 characters (so
  ``<name>.json`` stays under the 255-byte file-name limit). A name that fails raises
  :class:`BadInput` (exit 2 with one line), never a sanitised look-alike: two sets whose names
  sanitise to the same string would silently share a file.
* :func:`confined` joins checked components under a base folder and checks the resolved result
  is still inside the resolved base (a symlink planted inside the folder cannot lead out).
* :func:`check_leaderboard_names` checks the names a leaderboard's files are made of.

Temporary files are not made here: ``saebench_sanity.io`` (the one atomic writer) creates them
with ``mkstemp`` in the target folder and gives them the umask's mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from saebench_sanity.errors import SaebenchError

MAX_NAME = 200


class BadInput(SaebenchError):
    """A name or path from a record, a config or the command line that would leave its folder."""


def safe_name(kind: str, value: object) -> str:
    """``value`` if it is usable as one file or folder name, else :class:`BadInput` naming
    ``kind`` (e.g. ``"run.name"``, ``"set name in a results record"``)."""
    if not isinstance(value, str):
        raise BadInput(f"{kind} must be a string usable as a file name, got {type(value).__name__} {value!r}")
    problem = None
    if not value:
        problem = "is empty"
    elif value in (".", ".."):
        problem = "is a relative folder reference"
    elif "/" in value or "\\" in value or (os.altsep and os.altsep in value):
        problem = "contains a path separator"
    elif value.startswith("."):
        problem = "starts with '.' (reserved for temporary files)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        problem = "contains a control character"
    elif len(value) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    if problem:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise BadInput(f"{kind} {shown!r} {problem}; use a plain name (letters, digits, '-', '_', '.')")
    return value


def confined(base: str | Path, *parts: str, kind: str = "name") -> Path:
    """``base / part / ...`` with each part checked by :func:`safe_name` and the resolved path
    inside the resolved ``base`` (:class:`BadInput` otherwise). The returned path is the plain
    join (not the resolved one), so messages show the folder the user gave."""
    for part in parts:
        safe_name(kind, part)
    base = Path(base)
    path = base.joinpath(*parts)
    root = base.resolve()
    real = path.resolve()
    if real != root and root not in real.parents:
        raise BadInput(f"{kind} {'/'.join(parts)!r} resolves to {str(real)!r}, outside {str(root)!r} "
                       f"(a symlink inside the folder points out); remove the link or choose another folder")
    return path


def check_leaderboard_names(name: str, sets: Iterable[object], results: str | Path) -> None:
    """A leaderboard is written to ``<out>/<name>.*`` and ``<out>/<name>/<set>.png``: ``name``
    (a run name, a family or ``--name``) and every set name read from the records under
    ``results`` must be plain names (:class:`BadInput` before anything is written)."""
    safe_name("leaderboard name", name)
    for set_name in sets:
        safe_name(f"set name in a results record under {str(results)!r}", set_name)
