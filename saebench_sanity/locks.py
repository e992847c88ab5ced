"""Exclusive locks on folders that one process at a time may write: a run's output folder, an
activation set being built, the one-time conversion of the default model.

A lock is ``fcntl.flock`` on a small file (the run's ``<out>/.lock``, ``.<name>.lock`` beside a
set or model folder) that also records who holds it (pid, host, start time, what). The kernel
drops a flock when its holder dies, however it dies (SIGKILL included), so a lock left behind by
a dead process is simply free: the next process takes it over and says so (info log). The lock
file itself is never deleted (deleting it would let two processes lock two different files).

A lock is held by an open file description: a second ``exclusive`` on the same file blocks even
inside one process, and child processes started by ``spawn`` do not inherit it. (A process that
``fork``-s children without ``exec`` shares the lock with them: it stays held until the last of
them exits.)

``fcntl`` is POSIX-only; where it is missing (Windows) locking is skipped with a debug log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from saebench_sanity.errors import SaebenchError

logger = logging.getLogger(__name__)

RUN_LOCK = ".lock"


class LockError(SaebenchError):
    """The lock file cannot be created (the folder is not writable, or is a file)."""


class LockBusyError(SaebenchError):
    """Another live process holds the lock (exit 2: wait for it, or use another folder)."""


def holder(path: str | Path) -> dict[str, Any]:
    """What the lock file records about its (last) holder: ``pid``, ``host``, ``since``, ``what``
    ({} when empty or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: Any) -> bool:
    """True when a process ``pid`` exists on this machine (EPERM: exists, owned by another user)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def describe(info: dict[str, Any]) -> str:
    """``pid 123 on host, since 2026-12-01 18:50:02 UTC`` from a lock file's record."""
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("host") and info.get("host") != socket.gethostname():
        parts.append(f"on {info['host']}")
    if isinstance(info.get("since"), (int, float)):
        parts.append("since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info["since"])))
    return ", ".join(parts)


@contextlib.contextmanager
def exclusive(path: str | Path, what: str, *, wait: bool = False, timeout: float | None = None,
              on_wait: Callable[[str], None] | None = None, busy_hint: str = "") -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the ``with`` block.

    ``wait=False``: a lock held by another live process raises :class:`LockBusyError` at once
    (one line naming ``what``, the holder and ``busy_hint``). ``wait=True``: block until it is
    free (``timeout`` seconds at most, then LockBusyError), after calling ``on_wait(message)``
    once, e.g. to print "waiting for ...". A lock whose recorded holder is dead is taken over.
    """
    path = Path(path)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock
        logger.debug("no fcntl on this platform: %s is not locked", path)
        yield path
        return
    from saebench_sanity.io import file_mode

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as exc:
        raise LockError(f"cannot create the lock file {str(path)!r} for {what} ({exc.strerror or exc}); "
                        "pick a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = holder(path)
            message = f"{what} is in use by another process ({describe(info)})"
            if not wait:
                raise LockBusyError(message + (f"; {busy_hint}" if busy_hint else "")) from None
            if on_wait is not None:
                on_wait(f"waiting: {message}")
            logger.info("waiting: %s", message)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:  # poll rather than block, so a timeout and Ctrl-C both work
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise LockBusyError(message + f"; gave up after {timeout:g} s") from None
                    time.sleep(0.2)
        previous = holder(path)
        if previous.get("pid") and previous.get("pid") != os.getpid() and previous.get("host") in (None, socket.gethostname()) \
                and not pid_alive(previous.get("pid")):
            logger.info("took over the lock of %s from a process that is gone (%s)", what, describe(previous))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3),
                             "what": what}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released: nobody holds it now
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_lock(out: str | Path) -> contextlib.AbstractContextManager[Path]:
    """The lock of a results folder: the run that holds it is the only writer, so no cell is
    trained twice and no record is written by two processes. A second run refuses at once."""
    out = Path(out)
    return exclusive(out / RUN_LOCK, f"results folder {str(out)!r}",
                     busy_hint="wait for that run to finish, or pass another --out")


def folder_lock(folder: str | Path, what: str, on_wait: Callable[[str], None] | None = None,
                timeout: float | None = None) -> contextlib.AbstractContextManager[Path]:
    """The lock of a folder built once and then shared (an activation set, a converted model):
    ``.<name>.lock`` beside it, so removing the folder keeps the lock. Waits for the holder."""
    folder = Path(folder)
    return exclusive(folder.parent / f".{folder.name}.lock", what, wait=True, on_wait=on_wait, timeout=timeout)


def held_by(path: str | Path) -> dict[str, Any] | None:
    """The holder record of the lock at ``path`` when a live process holds it now, else None.
    Reads only (the lock file is not created)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder(path) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
