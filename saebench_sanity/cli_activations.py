"""``saebench activations build|list|verify|fingerprint|rm``: manage stored real activation sets.

Wired into ``saebench`` by ``cli.py`` (``add_parser`` / ``run``). Bad input raises a
``SaebenchError`` (one line, exit 2): an unknown or non-stored set name, a hook point the model
does not have, an empty corpus folder, a shard that fails its hash or is truncated, an
unreadable fingerprint file (read before any shard is re-hashed), a new set's recipe option
(``--tokens``, ``--dtype``, ...) given with a registered NAME or ``--config`` (where it would be
ignored); argparse refuses a ``--rtol`` that is not a finite number >= 0.

Exit codes of ``verify``: 0 every shard matches its manifest (and, with ``--against FILE``, the
set's fingerprint matches FILE's within ``--rtol``); 1 the fingerprint does not match (one line
per mismatch on stdout); 2 a shard fails its hash, the set is not built, or bad input.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any

from saebench_sanity.cli import bounded_float
from saebench_sanity.errors import DataError, UnknownNameError


#: the recipe options of a one-line new set (``build --name NAME --model M --hook-point H``) and
#: their defaults; given with a registered NAME or ``--config`` they would be ignored, so they are refused
NEW_SET_DEFAULTS: dict[str, Any] = {"corpus": "default", "tokens": 65_024, "eval_tokens": 8_128, "context_len": 128,
                                    "dtype": "float32", "no_bos": False, "massive_ratio": None,
                                    "no_massive_flags": False, "exclude_massive": False, "revision": None}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("activations", help="build, list, verify or remove stored real activation sets")
    sub = p.add_subparsers(dest="activations_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    b = sub.add_parser("build", help="build stored sets (default: every registered real set); resumes partial builds",
                       description="Build stored activation sets: registered ones by NAME, the [sets.NAME] tables of a "
                                   "run config that give a model (--config FILE), or a new set in one line: --name "
                                   "NAME --model M --hook-point H [--corpus C] [--tokens N]. A new set's name is bound "
                                   "to its parameters: the same name with other parameters is refused (exit 2).")
    b.add_argument("names", nargs="*", metavar="NAME")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--config", metavar="FILE", help="run config whose [sets.NAME] tables describe new sets (model, "
                                                    "hook_point, corpus, context_len, n_train_tokens, ...)")
    b.add_argument("--name", help="name of a new set described by the options below")
    b.add_argument("--model", help="hub id (e.g. EleutherAI/pythia-70m), local model folder, or 'default'")
    b.add_argument("--revision", help="model revision (hub commit or tag)")
    b.add_argument("--hook-point", help="resid_post.L, mlp_out.L or attn_out.L")
    b.add_argument("--corpus", default=NEW_SET_DEFAULTS["corpus"],
                   help="'default' (embedded), a folder of .txt/.jsonl, or hf:<dataset>")
    b.add_argument("--tokens", type=int, default=NEW_SET_DEFAULTS["tokens"], help="training tokens to harvest (default 65,024)")
    b.add_argument("--eval-tokens", type=int, default=NEW_SET_DEFAULTS["eval_tokens"], help="held-out tokens (default 8,128)")
    b.add_argument("--context-len", type=int, default=NEW_SET_DEFAULTS["context_len"],
                   help="tokens per context, BOS included (default 128)")
    b.add_argument("--dtype", default=NEW_SET_DEFAULTS["dtype"], help="stored dtype: float32, float16 or bfloat16 (default float32)")
    b.add_argument("--no-bos", action="store_true", help="do not prepend BOS to every context")
    b.add_argument("--massive-ratio", type=float, default=None, metavar="R",
                   help="flag tokens whose activation norm exceeds R x the held-out median norm (default 10)")
    b.add_argument("--no-massive-flags", action="store_true", help="store no massive-activation flags")
    b.add_argument("--exclude-massive", action="store_true", help="leave the flagged tokens out of training batches")
    b.add_argument("--device", default="cpu", help="where the model runs while harvesting: cpu (default), auto, cuda, "
                                                   "cuda:N or mps (not part of the set's identity)")
    sub.add_parser("list", help="registered real sets, whether built, tokens, size on disk, manifest hash")
    v = sub.add_parser("verify", help="re-hash every shard of stored sets against their manifests; with --against, "
                                      "compare the set's fingerprint with a stored one (another machine's build)")
    v.add_argument("names", nargs="*", metavar="NAME", help="default: every built set")
    v.add_argument("--against", metavar="FILE", help="a fingerprint JSON (`saebench activations fingerprint NAME --out FILE`); "
                                                     "exit 1 when a statistic differs by more than --rtol of its scale")
    # a finite number >= 0: a NaN tolerance would pass every comparison, a negative one fail every one
    v.add_argument("--rtol", type=bounded_float(0.0, float("inf"), hi_open=True), default=None, metavar="X",
                   help="tolerance of --against, as a fraction of each statistic's scale (default 1e-4)")
    f = sub.add_parser("fingerprint", help="write a built set's fingerprint (identity, per-dim moments, fixed projections) as JSON")
    f.add_argument("name", metavar="NAME")
    f.add_argument("--out", metavar="FILE", help="default: stdout")
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


def _unreadable_declaration(name: str) -> Any:
    """The folder of a user set whose declaration the registry skipped (damaged, or of a form this
    version refuses: ``activations.real.user_set_specs`` logs which), else None."""
    from saebench_sanity.activations.real import USER_SET_FILE, store_root
    from saebench_sanity.activations.store import store_dir

    folder = store_dir(store_root(), name)
    return folder if (folder / USER_SET_FILE).is_file() else None


def _declare_new_sets(args: argparse.Namespace) -> list[str]:
    """Declare the new sets that ``build`` names through ``--config`` or ``--name/--model``
    (``activations.real.declare_user_set``) and return the names to build ([] when none)."""
    from saebench_sanity.activations.real import register_user_sets
    from saebench_sanity.errors import ConfigError
    from saebench_sanity.registry import get_registry

    one_line = {"model": args.model, "hook_point": args.hook_point}
    given = [f"--{k.replace('_', '-')}" for k, default in NEW_SET_DEFAULTS.items() if getattr(args, k) != default]
    if given and (args.config or not (args.name or args.model or args.hook_point)):
        where = "--config FILE takes them from its [sets.NAME] table" if args.config else \
            "a registered set's recipe is fixed (`saebench list` shows it)"
        raise ConfigError(f"{', '.join(given)}: only for a new set given in one line (--name NAME --model M "
                          f"--hook-point H); {where}")
    if args.config:
        if args.name or args.model or args.hook_point:
            raise ConfigError("give a new set either with --config FILE or with --name/--model/--hook-point, not both")
        from saebench_sanity import config as config_mod

        recipes = config_mod.user_set_recipes(config_mod.load(args.config))
        unknown = [n for n in args.names if n not in recipes]
        if not recipes or unknown:
            raise ConfigError(f"{args.config}: no [sets.{(unknown or ['NAME'])[0]}] table with model and hook_point; "
                              "describe the set there (model, hook_point, corpus, context_len, n_train_tokens, ...)")
        chosen = {n: recipes[n] for n in (args.names or recipes)}
        return register_user_sets(chosen, get_registry())
    if not (args.name or args.model or args.hook_point):
        return []
    missing = [f"--{k.replace('_', '-')}" for k, v in {"name": args.name, **one_line}.items() if not v]
    if missing:
        raise ConfigError(f"a new set needs {', '.join(missing)} (e.g. --name pythia70m-resid3 --model "
                          "EleutherAI/pythia-70m --hook-point resid_post.3)")
    if args.names:
        raise ConfigError("give a new set's name with --name, not as a positional NAME")
    recipe = {"model": args.model, "hook_point": args.hook_point, "corpus": args.corpus,
              "n_train_tokens": args.tokens, "n_eval_tokens": args.eval_tokens, "context_len": args.context_len,
              "dtype": args.dtype, "prepend_bos": not args.no_bos}
    if args.no_massive_flags and (args.massive_ratio is not None or args.exclude_massive):
        raise ConfigError("--no-massive-flags stores no flags; it cannot go with --massive-ratio or --exclude-massive")
    if args.no_massive_flags:
        recipe["massive_norm_ratio"] = None
    elif args.massive_ratio is not None:
        recipe["massive_norm_ratio"] = args.massive_ratio
    if args.exclude_massive:
        recipe["exclude_massive"] = True
    if args.revision:
        recipe["model_revision"] = args.revision
    return register_user_sets({args.name: recipe}, get_registry())


def _size(path: Any) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _read_fingerprint_file(names: list[str], path: str) -> dict[str, Any]:
    """The fingerprint JSON at ``path`` that ``verify --against`` compares the one set in ``names``
    with; DataError (exit 2) for anything else, before any shard is re-hashed."""
    import json
    from pathlib import Path

    if len(names) != 1:
        raise DataError(f"--against compares one set with one fingerprint file; name exactly one set (got {len(names)})")
    try:
        stored = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read fingerprint file {path!r} ({exc}); write one with "
                        f"`saebench activations fingerprint {names[0]} --out FILE`") from exc
    if not isinstance(stored, dict) or "train" not in stored or "eval" not in stored:
        raise DataError(f"{path!r} is not a fingerprint file; write one with `saebench activations fingerprint NAME --out FILE`")
    return stored


def _verify_against(name: str, stored: dict[str, Any], path: str, rtol: float | None, console: Any) -> int:
    """Compare the fingerprint of set ``name`` with ``stored``, read from ``path`` (exit code)."""
    from saebench_sanity.activations import fingerprint as fp
    from saebench_sanity.activations.store import fingerprint

    tol = fp.DEFAULT_RTOL if rtol is None else float(rtol)
    try:
        mismatches = fp.compare(stored, fingerprint(_stored_set(name).path), rtol=tol)
    except (KeyError, TypeError, IndexError) as exc:
        raise DataError(f"fingerprint file {path!r} lacks or mangles field {exc}; write it again with "
                        f"`saebench activations fingerprint {name} --out FILE`") from exc
    for line in mismatches:
        sys.stdout.write(f"{name}: {line}\n")
    if mismatches:
        console.print(f"[red]MISMATCH[/red] {name}: {len(mismatches)} fingerprint mismatch(es) against {path} (rtol {tol:g})")
        return 1
    console.print(f"[green]ok[/green] {name}: identity and fingerprint match {path} (rtol {tol:g})")
    return 0


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    action = args.activations_command
    if action == "build":
        from saebench_sanity.devices import resolve_device

        device = resolve_device(args.device, "--device")
        names = _declare_new_sets(args) or args.names or [s.name for s in _stored_specs()]
        for name in names:
            s = _stored_set(name)
            s.build(console=console, progress=not args.no_progress, device=device)
            import json

            log = json.loads((s.path / "build-log.json").read_text()) if (s.path / "build-log.json").is_file() else {}
            console.print(f"[green]built[/green] {name}: {s.reader.manifest['n_train_tokens']:,} train + "
                          f"{s.reader.manifest['n_eval_tokens']:,} eval tokens, {_size(s.path) / 1e6:.0f} MB, "
                          f"{log.get('tokens_per_second') or '?'} tok/s -> {s.path}")
        return 0
    if action == "list":
        from rich.table import Table

        from saebench_sanity.activations.store import identity_hash, is_complete, read_manifest

        table = Table("name", "hook point", "built", "train tokens", "eval tokens", "size MB", "identity sha256")
        for spec in _stored_specs():
            s = _stored_set(spec.name)
            if is_complete(s.path):
                m = read_manifest(s.path)
                table.add_row(spec.name, m["hook_point"], "yes", f"{m['n_train_tokens']:,}", f"{m['n_eval_tokens']:,}",
                              f"{_size(s.path) / 1e6:.0f}", identity_hash(s.path)[:16])
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
        stored = _read_fingerprint_file(names, args.against) if args.against else None  # bad input before hashing
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
        if stored is not None:
            return _verify_against(names[0], stored, args.against, args.rtol, console)
        return 0
    if action == "fingerprint":
        import json

        from saebench_sanity.activations.store import fingerprint, is_complete

        if args.out:  # a folder, or a path under a file: one line, before the fingerprint is computed
            from saebench_sanity.cli import check_writable_file

            check_writable_file(args.out, "--out")
        s = _stored_set(args.name)
        if not is_complete(s.path):
            raise DataError(f"activation set {args.name!r} is not built; run `saebench activations build {args.name}`")
        text = json.dumps(fingerprint(s.path), indent=1, sort_keys=True) + "\n"
        if args.out:
            from saebench_sanity.io import atomic_write_text

            atomic_write_text(args.out, text)
            console.print(f"wrote the fingerprint of {args.name} to {args.out}")
        else:
            sys.stdout.write(text)
        return 0
    if action == "rm":
        for name in args.names:
            try:
                path = _stored_set(name).path
            except UnknownNameError:
                path = _unreadable_declaration(name)  # skipped by the registry: removable all the same
                if path is None:
                    raise
            if path.exists():
                shutil.rmtree(path)
                console.print(f"removed {path}")
            else:
                console.print(f"{name} is not built; nothing to remove")
        return 0
    sys.stderr.write(f"error: unknown activations action {action!r}\n")  # pragma: no cover - argparse prevents it
    return 2
