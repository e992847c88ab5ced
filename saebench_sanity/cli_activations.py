"""``saebench activations build|list|verify|rm``: manage stored real activation sets.

Wired into ``saebench`` by ``cli.py`` (``add_parser`` / ``run``). Bad input raises a
``SaebenchError`` (one line, exit 2): an unknown or non-stored set name, a hook point the model
does not have, an empty corpus folder, a shard that fails its hash or is truncated.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from saebench_sanity.errors import DataError, UnknownNameError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("activations", help="build, list, verify or remove stored real activation sets")
    sub = p.add_subparsers(dest="activations_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    b = sub.add_parser("build", help="build stored sets (default: every registered real set); resumes partial builds")
    b.add_argument("names", nargs="*", metavar="NAME")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("list", help="registered real sets, whether built, tokens, size on disk, manifest hash")
    v = sub.add_parser("verify", help="re-hash every shard of stored sets against their manifests")
    v.add_argument("names", nargs="*", metavar="NAME", help="default: every built set")
    r = sub.add_parser("rm", help="delete a stored set (it is rebuilt on next use)")
    r.add_argument("names", nargs="+", metavar="NAME")


def _stored_specs() -> list[Any]:
    from saebench_sanity.registry import get_registry

    reg = get_registry()
    return [reg.get("activation_set", n) for n in reg.names("activation_set")
            if getattr(reg.get("activation_set", n), "family", "") == "real"]


def _stored_set(name: str) -> Any:
    """The RealActivationSet behind a registered name (nothing is built)."""
    from saebench_sanity.activations.real import RealActivationSet
    from saebench_sanity.registry import get_registry

    spec = get_registry().get("activation_set", name)
    if spec.family != "real":
        raise UnknownNameError(f"activation set {name!r} is {spec.family}, not stored on disk; "
                               f"`saebench activations list` shows the stored ones")
    s = spec.build()
    if not isinstance(s, RealActivationSet):
        raise UnknownNameError(f"activation set {name!r} is not a stored set; `saebench activations list` shows the stored ones")
    return s


def _size(path: Any) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    action = args.activations_command
    if action == "build":
        names = args.names or [s.name for s in _stored_specs()]
        for name in names:
            s = _stored_set(name)
            s.build(console=console, progress=not args.no_progress)
            import json

            log = json.loads((s.path / "build-log.json").read_text()) if (s.path / "build-log.json").is_file() else {}
            console.print(f"[green]built[/green] {name}: {s.reader.manifest['n_train_tokens']:,} train + "
                          f"{s.reader.manifest['n_eval_tokens']:,} eval tokens, {_size(s.path) / 1e6:.0f} MB, "
                          f"{log.get('tokens_per_second') or '?'} tok/s -> {s.path}")
        return 0
    if action == "list":
        from rich.table import Table

        from saebench_sanity.activations.store import is_complete, manifest_hash, read_manifest

        table = Table("name", "hook point", "built", "train tokens", "eval tokens", "size MB", "manifest sha256")
        for spec in _stored_specs():
            s = _stored_set(spec.name)
            if is_complete(s.path):
                m = read_manifest(s.path)
                table.add_row(spec.name, m["hook_point"], "yes", f"{m['n_train_tokens']:,}", f"{m['n_eval_tokens']:,}",
                              f"{_size(s.path) / 1e6:.0f}", manifest_hash(s.path)[:16])
            else:
                state = "partial" if s.path.exists() else "no"
                table.add_row(spec.name, s.config.hook_point, state, "", "", f"{_size(s.path) / 1e6:.0f}", "")
        from saebench_sanity.report import table_console

        table_console(160).print(table)  # names and hashes whole when piped
        return 0
    if action == "verify":
        from saebench_sanity.activations.reader import StoreReader
        from saebench_sanity.activations.store import is_complete

        names = args.names or [sp.name for sp in _stored_specs() if is_complete(_stored_set(sp.name).path)]
        problems: list[str] = []
        for name in names:
            s = _stored_set(name)
            if not is_complete(s.path):
                raise DataError(f"activation set {name!r} is not built; run `saebench activations build {name}`")
            found = StoreReader(s.path).verify()
            problems += found
            n = len(StoreReader(s.path).manifest["shards"]) + 1
            console.print(f"{'[red]FAILED[/red]' if found else '[green]ok[/green]'} {name}: {n - len(found)}/{n} shards match the manifest")
        if problems:
            raise DataError(problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
        return 0
    if action == "rm":
        for name in args.names:
            s = _stored_set(name)
            if s.path.exists():
                shutil.rmtree(s.path)
                console.print(f"removed {s.path}")
            else:
                console.print(f"{name} is not built; nothing to remove")
        return 0
    sys.stderr.write(f"error: unknown activations action {action!r}\n")  # pragma: no cover - argparse prevents it
    return 2
