"""The results module: the store of checkpoints and per-cell results under one output directory,
and the typed records it holds (``saebench_sanity.records``, re-exported here).

The harness writes through it and the leaderboard reads through it; neither imports the other
(``tests/test_layers.py``). It lived in ``harness/store.py``, which still re-exports it.

Layout::

    <root>/.lock                      held by the one `saebench run` writing here (``locks``)
    <root>/run.json                   the last run's config, cell keys and metric keys
    <root>/events.jsonl               append-only log (trainings, quarantines)
    <root>/checkpoints/<key>/         SAELens SAE folder (cfg.json, sae_weights.safetensors)
                         train.json   loss/MSE curves, steps, seconds, converged, ...
                         COMPLETE     written last; lists every file of the folder with its sha256
    <root>/results/<key>.json         cell identity, training summary, per-metric results
    <root>/quarantine/<when>/...      damaged files moved aside by :meth:`ResultStore.heal`

Writes are atomic (``saebench_sanity.io``): a process killed at any point leaves the old state or
the new one, never a half-written file.

Integrity. Every result record and ``run.json`` carries ``"sha256"``, the hash of its own
canonical JSON without that field, and records carry ``"checkpoint_sha256"``, the hash of the
``COMPLETE`` marker of the checkpoint their metrics were computed from. Reading checks them:

* a record that does not parse, is not a JSON object of the record's shape, is filed under
  another cell's key or does not match its hash is *damaged*; one whose checkpoint has since been
  replaced is *stale*. Both are read as absent, so their cell is scored again;
* a checkpoint whose marker, files or hashes do not match is damaged and read as absent, so its
  cell is trained again (a lost ``train.json`` or a garbled ``cfg.json`` / weights file is caught
  here, not hidden by the cached metrics of the record).

Records and checkpoints written before hashes existed (no ``sha256`` field; a marker that holds
only the key) are *legacy*: accepted when they parse and have the right shape, never rewritten
just for that. :meth:`ResultStore.verify` lists every problem with its file; :meth:`heal` (called
by ``saebench run`` under the folder's lock, before any cell runs) moves the damaged items into
``quarantine/`` with one warning line each.

(SAELens writes checkpoints but has no resumable, self-checking result store for a matrix of
runs; this is the small piece we write by hand.)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from saebench_sanity.errors import DataError
from saebench_sanity.io import (  # noqa: F401 - re-exported: older imports use harness.store
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    clean as _clean,
    dumps,
    fsync_dir as _fsync_dir,
    is_temporary,
    sha256_bytes,
    sha256_file,
)
from saebench_sanity.paths import safe_name
from saebench_sanity.records import (  # noqa: F401 - the typed records, re-exported: one module for results
    SCHEMA_FIELD,
    SCHEMA_VERSION,
    CellIdentity,
    MetricEntry,
    ResultRecord,
    TrainingSummary,
    parse_record,
    record_problem,
)

logger = logging.getLogger(__name__)

MARKER = "COMPLETE"
TRAIN_FILE = "train.json"
RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
QUARANTINE = "quarantine"
#: the record's own content hash and the hash of the checkpoint marker its metrics came from
HASH_FIELD = "sha256"
CHECKPOINT_FIELD = "checkpoint_sha256"
SEAL_FIELDS = (HASH_FIELD, CHECKPOINT_FIELD)
MARKER_FORMAT = 2
STALE = "stale"
#: files a checkpoint written before markers listed hashes must hold (sae-lens's and ours)
LEGACY_CHECKPOINT_FILES = ("cfg.json", "sae_weights.safetensors", TRAIN_FILE)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a store: ``path`` relative to the store's root, what is wrong, and the
    cell key it concerns (None for run-level files)."""

    path: str
    message: str
    kind: str  # "record" | "checkpoint" | "run"
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyReport:
    """What :meth:`ResultStore.verify` found: ``problems`` are damaged or inconsistent files,
    ``missing`` the keys of planned cells (``run.json``'s ``cell_keys``) without a usable record,
    ``records`` the usable records of the planned cells, ``notes`` harmless findings (leftover
    temporaries, quarantined items)."""

    problems: list[Problem] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    n_records: int = 0
    n_checkpoints: int = 0


def seal(obj: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``obj`` as stored: JSON-clean, with ``extra`` fields and ``sha256`` of the canonical JSON
    of everything else (so ``unseal`` can check it)."""
    body = json.loads(dumps({**{k: v for k, v in obj.items() if k not in SEAL_FIELDS}, **extra}))
    return {**body, HASH_FIELD: sha256_bytes(dumps(body).encode())}


def unseal(obj: Any) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
    """``(content without the seal fields, problem or None, seal fields)`` of a parsed file.
    A file without ``sha256`` is legacy: accepted unchecked."""
    if not isinstance(obj, dict):
        return None, f"holds a JSON {type(obj).__name__}, not an object", {}
    seals = {k: obj[k] for k in SEAL_FIELDS if k in obj}
    if HASH_FIELD in obj:
        body = {k: v for k, v in obj.items() if k != HASH_FIELD}
        if not isinstance(obj[HASH_FIELD], str) or sha256_bytes(dumps(body).encode()) != obj[HASH_FIELD]:
            return None, "content does not match its sha256 (edited or damaged)", seals
    return {k: v for k, v in obj.items() if k not in SEAL_FIELDS}, None, seals


def read_json(path: Path) -> tuple[Any, str | None]:
    """``(parsed, None)`` or ``(None, why it cannot be read)``; never raises for bad content."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        return json.loads(data.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "is not UTF-8 text (damaged)"
    except (json.JSONDecodeError, RecursionError) as exc:
        return None, f"is not valid JSON ({str(exc).splitlines()[0][:80]}; truncated or damaged)"


def record_shape_problem(rec: dict[str, Any], key: str | None) -> str | None:
    """Why ``rec`` cannot be a result record of cell ``key`` (None if it can). Only the fields the
    harness and the leaderboard index into are checked: a wrong type there would crash them."""
    if key is not None and "key" in rec and rec["key"] != key:
        return f"is the record of cell {str(rec['key'])[:40]!r}, filed under {key!r}"
    for name, typ in (("cell", dict), ("metrics", dict), ("training", dict), ("status", str)):
        if rec.get(name) is not None and not isinstance(rec[name], typ):
            return f"field {name!r} is a JSON {type(rec[name]).__name__}, not {'an object' if typ is dict else 'a string'}"
    for mkey, entry in (rec.get("metrics") or {}).items():
        if not isinstance(entry, dict):
            return f"metric entry {str(mkey)[:40]!r} is a JSON {type(entry).__name__}, not an object"
        if entry.get("scores") is not None and not isinstance(entry["scores"], dict):
            return f"metric entry {str(mkey)[:40]!r} has scores that are not an object"
    return None


def _safe_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def _read_sealed(path: Path) -> tuple[Any, str | None, dict[str, Any]]:
    """``unseal`` of the JSON in ``path``: ``(body, None, seals)`` or ``(None, problem, {})`` when
    the file does not parse or its seal does not match (run.json and result records)."""
    data, why = read_json(path)
    if why is not None:
        return None, why, {}
    return unseal(data)


class ResultStore:
    """Checkpoints and results of one output directory (see module docstring).

    Readers never move or delete anything (the leaderboard and ``saebench verify`` read through
    this class); only :meth:`heal` and :meth:`clean_temporaries` do, and only the process holding
    the folder's run lock calls them."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        #: checkpoint key -> (stat signature, marker sha256) of the last successful check
        self._verified: dict[str, tuple[Any, str | None]] = {}
        self._warned: set[str] = set()

    # -- paths ---------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE

    def checkpoint_dir(self, key: str) -> Path:
        return self.checkpoints / safe_name("cell key", key)  # keys come from run.json too: one plain name

    def result_path(self, key: str) -> Path:
        return self.results / f"{safe_name('cell key', key)}.json"

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def _warn_once(self, path: Path, why: str) -> None:
        rel = self._rel(path)
        if rel not in self._warned:
            self._warned.add(rel)
            logger.warning("ignoring %s in %s: %s (`saebench verify --results %s` lists every problem; the next "
                           "`saebench run` on it moves it to %s/ and redoes its cell)", rel, self.root, why,
                           self.root, QUARANTINE)

    # -- checkpoints ---------------------------------------------------------------------------
    def _check_checkpoint(self, key: str) -> tuple[str, str | None, str | None]:
        """``(state, problem, marker sha256)``: state ``"absent"`` (no folder), ``"incomplete"``
        (folder without marker: an interrupted write of an older version), ``"bad"`` or ``"ok"``.
        The marker hash is None for legacy markers. Successful checks are cached by the files'
        sizes and mtimes, so a checkpoint is hashed once per process unless it changes."""
        folder = self.checkpoint_dir(key)
        marker = folder / MARKER
        if not folder.is_dir():
            return "absent", None, None
        if not marker.is_file():
            return "incomplete", f"no {MARKER} marker (an interrupted write); the cell is trained again", None
        try:
            names = sorted(p.name for p in folder.iterdir() if p.is_file())
            signature = tuple((n, (st := (folder / n).stat()).st_size, st.st_mtime_ns) for n in names)
        except OSError as exc:
            return "bad", f"unreadable ({exc})", None
        cached = self._verified.get(key)
        if cached is not None and cached[0] == signature:
            return "ok", None, cached[1]
        raw = marker.read_bytes()
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            meta = None
        if isinstance(meta, dict) and "files" in meta:
            problem = self._check_listed(key, folder, meta)
            stamp = sha256_bytes(raw)
        elif raw.decode("utf-8", errors="replace").strip() == key:  # legacy marker: the key alone
            problem, stamp = self._check_legacy(folder), None
        else:
            problem, stamp = f"{MARKER} marker is damaged", None
        if problem is not None:
            return "bad", problem, None
        self._verified[key] = (signature, stamp)
        return "ok", None, stamp

    @staticmethod
    def _check_listed(key: str, folder: Path, meta: dict[str, Any]) -> str | None:
        files = meta.get("files")
        if meta.get("key") != key:
            return f"{MARKER} names cell {str(meta.get('key'))[:40]!r}, not {key!r}"
        if not isinstance(files, dict) or not files or not all(_safe_name(n) and isinstance(h, str) for n, h in files.items()):
            return f"{MARKER} marker is damaged (its file list is not name -> sha256)"
        for name, digest in sorted(files.items()):
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_file(path) != digest:
                return f"{name} does not match its sha256 in {MARKER} (edited or damaged)"
        if TRAIN_FILE not in files:
            return f"{MARKER} does not list {TRAIN_FILE}"
        return None

    @staticmethod
    def _check_legacy(folder: Path) -> str | None:
        """A checkpoint from before hashed markers: its files must exist and parse (there is no
        hash to compare; the safetensors header must cover the file exactly)."""
        for name in LEGACY_CHECKPOINT_FILES:
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if name.endswith(".json"):
                data, why = read_json(path)
                if why is not None:
                    return f"{name} {why}"
                if not isinstance(data, dict):
                    return f"{name} holds a JSON {type(data).__name__}, not an object"
            else:
                try:
                    from safetensors import safe_open

                    with safe_open(str(path), framework="np") as fh:
                        list(fh.keys())
                except Exception as exc:  # noqa: BLE001 - any parse error means a damaged file
                    return f"{name} is damaged ({str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__})"
        return None

    def has_checkpoint(self, key: str) -> bool:
        """True when the checkpoint of ``key`` is complete and intact; a damaged one is reported
        once (warning) and counts as absent, so the cell is trained again."""
        state, problem, _ = self._check_checkpoint(key)
        if state == "bad":
            self._warn_once(self.checkpoint_dir(key), problem or "damaged")
        return state == "ok"

    def checkpoint_stamp(self, key: str) -> str | None:
        """sha256 of the checkpoint's marker (it lists every file's hash, so it names the exact
        weights), or None when there is no intact, hash-listing checkpoint."""
        state, _, stamp = self._check_checkpoint(key)
        return stamp if state == "ok" else None

    def write_checkpoint(self, key: str, save_fn: Callable[[Path], Any], train_info: dict[str, Any]) -> Path:
        """Assemble a checkpoint folder: ``save_fn(tmp_dir)`` writes the SAE, then ``train.json``
        and the marker (listing every file with its sha256) are written and the folder is renamed
        into place, replacing an older or damaged one."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.checkpoint_dir(key)
        self._verified.pop(key, None)
        with atomic_dir(final) as tmp:
            save_fn(tmp)
            atomic_write_json(tmp / TRAIN_FILE, train_info)
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file() and not is_temporary(p.name)}
            atomic_write_text(tmp / MARKER, dumps({"format": MARKER_FORMAT, "key": key, "files": files}))
        return final

    def clean_temporaries(self) -> int:
        """Remove temporary files/folders left by a killed process (call before a run starts,
        never while another process writes to this store). Returns how many were removed."""
        n = 0
        for folder in (self.checkpoints, self.results, self.root):
            if not folder.is_dir():
                continue
            for child in folder.iterdir():
                if is_temporary(child.name):
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
                    n += 1
        return n

    def load_train_info(self, key: str) -> dict[str, Any]:
        """The checkpoint's ``train.json`` (DataError naming the file if it is damaged)."""
        path = self.checkpoint_dir(key) / TRAIN_FILE
        data, why = read_json(path)
        if why is None and not isinstance(data, dict):
            why = f"holds a JSON {type(data).__name__}, not an object"
        if why is not None:
            raise DataError(f"{path} {why}; run `saebench run` on {self.root} again to retrain the cell")
        return data

    # -- results -------------------------------------------------------------------------------
    def read_result(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(record, None)``, ``(None, None)`` when there is no record, or ``(None, problem)``
        when it is damaged or stale. Never raises for bad content, never moves anything."""
        path = self.result_path(key)
        if not path.is_file():
            return None, None
        rec, why, seals = _read_sealed(path)
        if why is None:
            why = record_shape_problem(rec, key)
        if why is None:  # every present field has its type (saebench_sanity.records)
            why = record_problem(rec)
        if why is None and isinstance(seals.get(CHECKPOINT_FIELD), str):
            # the marker names the exact files the metrics came from; whether those files are
            # still intact is the checkpoint's own check (a record stays valid data either way)
            marker = self.checkpoint_dir(key) / MARKER
            try:
                stamp = sha256_bytes(marker.read_bytes())
            except FileNotFoundError:
                stamp = None
            except OSError as exc:
                stamp, why = None, f"its checkpoint's {MARKER} is unreadable ({exc.strerror or exc})"
            if why is None and stamp is not None and stamp != seals[CHECKPOINT_FIELD]:
                why = (f"{STALE}: its metrics were computed from another checkpoint than the one stored "
                       "(the cell was retrained since, or its marker was damaged)")
        return (None, why) if why is not None else (rec, None)

    def load_result(self, key: str) -> dict[str, Any] | None:
        """The record of ``key`` without its seal fields, or None when there is none or it is
        damaged or stale (reported once as a warning); a None cell is scored again."""
        rec, why = self.read_result(key)
        if why is not None and why.startswith(STALE):  # expected right after a retrain: rescored now
            logger.info("%s is %s; its cell is scored again", self._rel(self.result_path(key)), why)
        elif why is not None:
            self._warn_once(self.result_path(key), why)
        return rec

    def write_result(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` sealed with its hash and its checkpoint's marker hash. Nothing is
        written when the file already holds this content (sealed, or a legacy record without a
        hash: it stays as it was written, without a ``schema_version`` too)."""
        stamp = self.checkpoint_stamp(key)
        sealed = seal({**record, SCHEMA_FIELD: SCHEMA_VERSION}, **({CHECKPOINT_FIELD: stamp} if stamp else {}))
        text = dumps(sealed)
        path = self.result_path(key)
        old, why = read_json(path) if path.is_file() else (None, "absent")
        if why is None and isinstance(old, dict):
            if dumps(old) == text:
                return
            legacy = {k: v for k, v in sealed.items() if k not in SEAL_FIELDS and (k != SCHEMA_FIELD or SCHEMA_FIELD in old)}
            if HASH_FIELD not in old and dumps(old) == dumps(legacy):
                return
        atomic_write_text(path, text)

    def result_keys(self) -> list[str]:
        if not self.results.is_dir():
            return []
        return sorted(p.stem for p in self.results.glob("*.json") if not is_temporary(p.name))

    def iter_results(self) -> list[dict[str, Any]]:
        """Every usable record (damaged and stale ones are skipped with a warning)."""
        return [rec for rec in (self.load_result(k) for k in self.result_keys()) if rec is not None]

    # -- run manifest and event log ------------------------------------------------------------
    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.root / RUN_FILE, seal(info))

    def read_run(self) -> tuple[dict[str, Any] | None, str | None]:
        """``(run.json contents, None)``, ``(None, None)`` if absent, ``(None, problem)``."""
        path = self.root / RUN_FILE
        if not path.is_file():
            return None, None
        run, why, _ = _read_sealed(path)
        if why is None:
            for name, typ in (("cell_keys", list), ("metric_keys", list), ("config", dict)):
                if run.get(name) is not None and not isinstance(run[name], typ):
                    why = f"field {name!r} is a JSON {type(run[name]).__name__}, not {'a list' if typ is list else 'an object'}"
                    break
        return (None, why) if why is not None else (run, None)

    def load_run(self) -> dict[str, Any] | None:
        """``run.json`` (None if absent); DataError naming the file when it is damaged."""
        run, why = self.read_run()
        if why is not None:
            raise DataError(f"{self.root / RUN_FILE} {why}; `saebench run` on this folder writes it again "
                            f"(`saebench verify --results {self.root}` lists every problem)")
        return run

    def log_event(self, event: dict[str, Any]) -> None:
        """Append one JSON line to ``events.jsonl`` (O_APPEND: whole lines, also from workers)."""
        from saebench_sanity.io import file_mode

        self.root.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(_clean(event), sort_keys=True) + "\n").encode()
        fd = os.open(self.root / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode())
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """Logged events; torn or damaged lines (killed mid-write) are ignored."""
        path = self.root / EVENTS_FILE
        if not path.is_file():
            return []
        out = []
        for line in path.read_bytes().splitlines():
            try:
                ev = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def trainings(self) -> dict[str, int]:
        """How many times each training key finished training (from the event log)."""
        counts: dict[str, int] = {}
        for ev in self.events():
            if ev.get("event") == "trained" and isinstance(ev.get("key"), str):
                counts[ev["key"]] = counts.get(ev["key"], 0) + 1
        return counts

    # -- checking and healing ------------------------------------------------------------------
    def checkpoint_keys(self) -> list[str]:
        if not self.checkpoints.is_dir():
            return []
        return sorted(p.name for p in self.checkpoints.iterdir() if p.is_dir() and not is_temporary(p.name))

    def verify(self, keys: list[str] | None = None) -> VerifyReport:
        """Check ``run.json``, every record and every checkpoint (only those of ``keys`` when
        given) and list what is wrong, each with its file; planned cells of ``run.json`` without a
        usable record are listed in ``missing``. Reads only."""
        report = VerifyReport()
        run, why = self.read_run()
        if why is not None:
            report.problems.append(Problem(RUN_FILE, why, "run"))
        record_keys = self.result_keys() if keys is None else [k for k in keys if self.result_path(k).is_file()]
        ckpt_keys = self.checkpoint_keys() if keys is None else [k for k in keys if self.checkpoint_dir(k).is_dir()]
        report.n_records, report.n_checkpoints = len(record_keys), len(ckpt_keys)
        for key in ckpt_keys:
            state, problem, _ = self._check_checkpoint(key)
            if state in ("bad", "incomplete"):
                report.problems.append(Problem(self._rel(self.checkpoint_dir(key)) + "/", problem or state, "checkpoint", key))
        usable: dict[str, dict[str, Any]] = {}
        for key in record_keys:
            rec, problem = self.read_result(key)
            if problem is not None:
                report.problems.append(Problem(self._rel(self.result_path(key)), problem, "record", key))
            elif rec is not None:  # (None, None): the file vanished after it was listed; counted missing
                usable[key] = rec
        report.run = run
        if run is not None and keys is None:
            planned = [k for k in run.get("cell_keys") or [] if isinstance(k, str)]
            report.missing = [k for k in planned if k not in usable]
            report.records = [usable[k] for k in planned if k in usable]
        leftovers = [p for d in (self.root, self.results, self.checkpoints) if d.is_dir()
                     for p in d.iterdir() if is_temporary(p.name)]
        if leftovers:
            report.notes.append(f"{len(leftovers)} temporary file(s) of an interrupted write (removed by the next run)")
        if self.quarantine.is_dir():
            n = sum(1 for p in self.quarantine.rglob("*") if p.is_file())
            report.notes.append(f"{n} file(s) in {QUARANTINE}/ moved aside by earlier runs")
        return report

    def _move_to_quarantine(self, path: Path, session: Path) -> Path:
        dest = session / self._rel(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest

    def heal(self, keys: list[str] | None = None) -> list[Problem]:
        """Move every damaged or stale item (of ``keys``, else all) into
        ``quarantine/<UTC time>-<pid>/`` under its relative path, one warning line each, and log a
        ``quarantined`` event; a quarantined checkpoint takes its record along (its metrics came
        from it). The cells are then absent and the run redoes them. A damaged ``run.json`` is
        moved aside too (the run writes a new one). Returns what was moved. Call only while
        holding the folder's run lock."""
        report = self.verify(keys)
        if not report.problems:
            return []
        session = self.quarantine / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
        moved: list[Problem] = []
        for problem in report.problems:
            path = self.root / problem.path.rstrip("/")
            if not (path.exists() or path.is_symlink()):
                continue  # already taken along with its checkpoint
            dest = self._move_to_quarantine(path, session)
            moved.append(problem)
            extra = ""
            if problem.kind == "checkpoint" and problem.key and self.result_path(problem.key).is_file():
                self._move_to_quarantine(self.result_path(problem.key), session)
                extra = " with its record"
            if problem.key:
                self._verified.pop(problem.key, None)
            logger.warning("quarantined %s%s: %s -> %s; its cell is redone", problem.path, extra, problem.message,
                           self._rel(dest))
            self.log_event({"event": "quarantined", "path": problem.path, "key": problem.key, "reason": problem.message,
                            "to": self._rel(dest)})
        _fsync_dir(self.root)
        return moved

