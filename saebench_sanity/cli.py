"""``saebench``: run the benchmark, list what is installed, render leaderboards.

Start-up is kept fast: this module imports only argparse and the package's light modules;
torch / sae-lens are imported by the subcommands that train or score (``run``), never by
``--help``, ``list`` or ``leaderboard``.

Errors: a ``SaebenchError`` (bad input) prints ``error: <one line>`` and exits 2; any other
exception prints one line plus a hint to re-run with ``--debug`` (which shows the traceback) and
exits 1; Ctrl-C exits 130 (finished cells are already on disk).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from saebench_sanity.errors import SaebenchError

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPT = 0, 1, 2, 130

#: Subcommands implemented in their own modules (each exposes ``add_parser(subparsers)`` and
#: ``run(args) -> int``); a module that is missing simply does not add its command.
EXTENSIONS = {"activations": "saebench_sanity.cli_activations", "check": "saebench_sanity.cli_check",
              "verify": "saebench_sanity.cli_verify"}


def _extension(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _csv_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names, e.g. reconstruction,ground_truth")
    return items


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_INPUT)


def build_parser() -> argparse.ArgumentParser:
    from saebench_sanity import __version__

    parser = _Parser(prog="saebench", description="Does this sparse autoencoder beat a random baseline? "
                     "Train SAEs and their random baselines on the same data and compare them.")
    parser.add_argument("--version", action="version", version=f"saebench-sanity {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="train and score the matrix of a suite, then print the leaderboard")
    p.add_argument("--config", metavar="FILE", help="run configuration TOML (default: the embedded default suite)")
    p.add_argument("--quick", action="store_true", help="the embedded quick suite (tiny, < 1 minute)")
    p.add_argument("--suite", metavar="NAME", help="an embedded suite by name: default, quick, real-resid24 (the default "
                   "suite's real half on the layer-24 set)")
    p.add_argument("--force", action="store_true", help="retrain and rescore cells that are already stored")
    p.add_argument("--metrics", type=_csv_list, metavar="A,B", help="only these metrics")
    p.add_argument("--sets", type=_csv_list, metavar="A,B", help="only these activation sets of the suite (the cells "
                   "keep their identity: a later run of the whole suite reuses them)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: the config's run.output_dir)")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N", help="cells in parallel (process pool)")
    p.add_argument("--threads", type=_positive_int, metavar="N", help="torch threads per process (default: torch's)")
    p.add_argument("--device", metavar="D", help="where SAEs train: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps "
                   "(default: the config's run.device, else auto)")
    p.add_argument("--dtype", metavar="T", help="training precision: float32, float64, bfloat16 (default: the config's run.dtype, else float32)")
    p.add_argument("--leaderboards", metavar="DIR", help="where to write <name>.md/.csv/.json (default: OUT/leaderboards)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("list", help="every registered set, architecture, mode, metric... and plugin problems")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("leaderboard", help="render leaderboard files from a results directory")
    p.add_argument("--results", default="saebench-runs/default", metavar="DIR", help="results directory (a run's output_dir)")
    p.add_argument("--out", default="leaderboards", metavar="DIR", help="where to write <name>.md/.csv/.json and <name>/*.png")
    p.add_argument("--name", default=None, help="file name stem of the leaderboard (default: the --family, else synthetic)")
    p.add_argument("--family", default=None, metavar="F", help="only the activation sets of this family (synthetic, real, ...)")
    p.add_argument("--check", action="store_true", help="recompute and exit 1 if the files under --out differ")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    for command, module in EXTENSIONS.items():
        ext = _extension(module)
        if ext is not None:
            ext.add_parser(sub)
    return parser


# -- commands ----------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from saebench_sanity.registry import get_registry

    registry = get_registry()
    items = [spec.describe() for spec in registry.all_items()]
    plugins = [{"name": p.name, "package": p.package, "version": p.version, "hooks": list(p.hooks)}
               for p in registry.plugins.values()]
    problems = [{"plugin": p.plugin, "message": p.message} for p in registry.problems]
    if args.json:
        sys.stdout.write(json.dumps({"items": items, "plugins": plugins, "problems": problems},
                                    indent=2, sort_keys=True, default=str) + "\n")
        return EXIT_OK
    from rich.table import Table

    from saebench_sanity.report import table_console

    console = table_console(160)
    table = Table(title="registered items", title_justify="left")
    for col in ("kind", "name", "plugin", "package"):
        table.add_column(col, no_wrap=True)
    table.add_column("description", overflow="fold")
    for it in items:
        table.add_row(it["kind"], it["name"], it["plugin"], it["package"], it["description"])
    console.print(table)
    ptable = Table(title="plugins", title_justify="left")
    for col in ("plugin", "package", "version", "hooks"):
        ptable.add_column(col)
    for p in plugins:
        ptable.add_row(p["name"], p["package"], p["version"], ", ".join(h.replace("saebench_register_", "") for h in p["hooks"]))
    console.print(ptable)
    for p in registry.problems:
        console.print(f"[red]problem[/red] {p}", highlight=False)
    return EXIT_OK


def with_device(cfg, device: str | None, dtype: str | None):
    """``cfg`` with ``--device`` / ``--dtype`` applied, the device resolved and checked against this
    machine now (one-line error, exit 2), before anything is planned or trained."""
    import dataclasses

    from saebench_sanity.devices import check_device_name, check_dtype_name, resolve_device, resolve_dtype

    if device is not None:
        check_device_name(device, "--device")
    if dtype is not None:
        check_dtype_name(dtype, "--dtype")
    if device is not None or dtype is not None:
        cfg = dataclasses.replace(cfg, device=device if device is not None else cfg.device,
                                  dtype=dtype if dtype is not None else cfg.dtype)
    option = "--device" if device is not None else "run.device"
    resolve_dtype(cfg.dtype, resolve_device(cfg.device, option), "--dtype" if dtype is not None else "run.dtype")
    return cfg


def only_sets(cfg, names: list[str]):
    """``cfg`` narrowed to the activation sets ``names`` (``--sets``), each of which the suite must list."""
    import dataclasses

    unknown = [n for n in names if n not in cfg.sets]
    if unknown:
        raise SaebenchError(f"--sets: {', '.join(unknown)} not in this suite's sets ({', '.join(cfg.sets)}); "
                            "pick from those or pass --config")
    return dataclasses.replace(cfg, sets=tuple(n for n in cfg.sets if n in names))


def cmd_run(args: argparse.Namespace) -> int:
    from saebench_sanity.harness.run import load_config, run
    from saebench_sanity.registry import get_registry
    from saebench_sanity.report import RichReporter, print_final, table_console

    chosen = [flag for flag, given in (("--config", args.config), ("--quick", args.quick), ("--suite", args.suite)) if given]
    if len(chosen) > 1:
        raise SaebenchError(f"{' and '.join(chosen)} each choose a suite; pass only one")
    cfg = with_device(load_config(args.config, args.quick, suite=args.suite), args.device, args.dtype)
    if args.sets:
        cfg = only_sets(cfg, args.sets)
    registry = get_registry()
    for problem in registry.problems:
        sys.stderr.write(f"warning: {problem}\n")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run(cfg, registry, out=args.out, force=args.force, metrics=args.metrics, jobs=args.jobs,
                 reporter=RichReporter(), plots=not args.no_plots, leaderboards=args.leaderboards)
    print_final(table_console(), result)
    failed = [o for o in result.outcomes if o.status != "ok"]
    if failed:
        first = failed[0]
        sys.stderr.write(f"error: {len(failed)} of {len(result.outcomes)} cells failed (first: {first.label}: "
                         f"{first.error}); results of the others are in {result.store.root}\n")
        return EXIT_INPUT if all(o.error_kind == "input" for o in failed) else EXIT_FAIL
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from saebench_sanity.leaderboard import aggregate, render

    name = args.name or args.family or "synthetic"
    sets = None
    if args.family:
        from saebench_sanity.harness.run import sets_of_family
        from saebench_sanity.registry import get_registry

        sets = sets_of_family(get_registry(), args.family)
        if not sets:
            raise SaebenchError(f"no registered activation set has family {args.family!r}; see `saebench list`")
    col = aggregate.collect(args.results, sets=sets)
    if args.check:
        differ = render.check(col, name=name, results=args.results, out=args.out, family=args.family)
        if differ:
            sys.stderr.write(f"error: leaderboard out of date: {', '.join(differ)} differ from the recorded results; "
                             f"regenerate with `{render.command_line(args.results, args.out, name, args.family)}`\n")
            return EXIT_FAIL
        sys.stdout.write(f"leaderboard {args.out}/{name}.* is current\n")
        return EXIT_OK
    paths = render.write(col, name=name, results=args.results, out=args.out, plots=not args.no_plots, family=args.family)
    sys.stdout.write("wrote " + ", ".join(str(p) for p in paths) + "\n")
    return EXIT_OK


COMMANDS = {"run": cmd_run, "list": cmd_list, "leaderboard": cmd_leaderboard}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT
    debug = bool(getattr(args, "debug", False))
    try:
        if args.command in COMMANDS:
            return int(COMMANDS[args.command](args) or 0)
        return int(_extension(EXTENSIONS[args.command]).run(args) or 0)
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or "the output directory"
        sys.stderr.write(f"interrupted: finished cells are saved in {where}; run the same command again to resume\n")
        return EXIT_INTERRUPT
    except SaebenchError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.stderr.write(f"error: {msg}\n")
        return getattr(exc, "exit_code", EXIT_INPUT)
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if debug:
            import traceback

            traceback.print_exc()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {msg} (re-run with --debug for the traceback)\n")
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
