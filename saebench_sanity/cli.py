"""``saebench``: run the benchmark, list what is installed, render leaderboards.

Start-up is kept fast: this module imports only argparse and the package's light modules;
torch / sae-lens are imported by the subcommands that train or score (``run``), never by
``--help``, ``list`` or ``leaderboard``.

Errors: a ``SaebenchError`` (bad input) prints ``error: <one line>`` and exits 2; a full disk
exits 2 with the free space; any other exception prints one line plus a hint to re-run with
``--debug`` (which shows the traceback) and exits 1; ``run`` exits 3 when it finished but a cell or
a metric errored; Ctrl-C exits 130 (finished cells are already on disk). The codes are listed in
``saebench --help`` (``EPILOG``) and docs/configuration.md.

Logging: library modules log through ``logging.getLogger(__name__)``; the CLI shows warnings,
``-v`` adds progress notes (info), ``-vv`` debug, ``--quiet`` only errors.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from saebench_sanity.errors import SaebenchError

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPT = 0, 1, 2, 3, 130

EPILOG = """exit codes:
  0    success (run: every planned cell and metric is stored)
  1    unexpected error, a bug (one line; --debug shows the traceback); leaderboard --check:
       files out of date; check: FAIL or INCONCLUSIVE; list --strict: a plugin problem
  2    bad input, refused before any work: config, arguments, names, data, an output path that
       cannot be written; also a full disk ("free N MB")
  3    run: finished, but some cell or metric errored (the first is named; the rest are stored,
       re-run to retry them); check: NO VERDICT
  130  interrupted (finished cells are saved; run the same command again to resume)
"""

log = logging.getLogger("saebench_sanity.cli")

#: Subcommands implemented in their own modules (each exposes ``add_parser(subparsers)`` and
#: ``run(args) -> int``); a module that is missing simply does not add its command.
EXTENSIONS = {"activations": "saebench_sanity.cli_activations", "check": "saebench_sanity.cli_check",
              "verify": "saebench_sanity.cli_verify", "export": "saebench_sanity.cli_export", "new-plugin": "saebench_sanity.cli_new_plugin"}


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


def bounded_int(lo: int, hi: int) -> Callable[[str], int]:
    """argparse type: an integer in ``lo..hi`` (``--steps 99999999999999999999`` is refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is not an integer in {lo:,}..{hi:,}")
        return value

    return parse


def bounded_float(lo: float, hi: float, *, hi_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in ``[lo, hi]`` (or ``[lo, hi)``); ``nan`` / ``inf`` are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value and (value < hi if hi_open else value <= hi)):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number in [{lo:g}, {hi:g}{')' if hi_open else ']'}")
        return value

    return parse


_positive_int = bounded_int(1, 1024)


def check_writable_dir(path: str | os.PathLike[str], option: str) -> Path:
    """``path`` as a folder this process can write into (created if missing); SaebenchError
    naming ``option`` otherwise (a file, ``/dev/null``, a read-only or missing parent). Checked
    by writing a probe file, because ``os.access`` says yes to root on read-only mounts."""
    import tempfile

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise SaebenchError(f"{option} {str(folder)!r} is not a folder (it is a file or device); pass a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".saebench-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(exc, folder) from None
        raise SaebenchError(f"{option} {str(folder)!r} cannot be written ({exc.strerror or exc}); pass a writable folder") from None
    return folder


def check_writable_file(path: str | os.PathLike[str], option: str) -> Path:
    """``path`` as a file this process can create or replace (its folder is checked by a probe);
    SaebenchError naming ``option`` otherwise."""
    target = Path(path)
    if target.is_dir():
        raise SaebenchError(f"{option} {str(target)!r} is a folder; pass a file path")
    if target.exists() and not target.is_file():
        raise SaebenchError(f"{option} {str(target)!r} is not a regular file; pass a file path")
    check_writable_dir(target.parent if str(target.parent) else Path("."), f"{option} folder")
    return target


def disk_full(exc: BaseException | None, where: str | os.PathLike[str] | None) -> SaebenchError:
    """The one-line error for ENOSPC / EDQUOT: what could not be written and the free space left."""
    import shutil

    place = Path(getattr(exc, "filename", None) or where or ".")
    probe = place
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free / 2**20
        free_text = f"free {free:,.0f} MB"
    except OSError:
        free_text = "free space unknown"
    return SaebenchError(f"no space left on the disk of {str(place)!r} ({free_text}); free space or pass another --out, "
                         "then re-run (finished cells are kept)")


def _says_disk_full(text: str) -> bool:
    # safetensors and torch report a full disk in their own error types, only in the text
    return "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text


def _is_disk_full(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if _says_disk_full(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


_HANDLER: logging.Handler | None = None


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Route the package's log records to stderr: warnings by default, ``-v`` info, ``-vv`` debug,
    ``--quiet`` errors only. Replaces the handler of an earlier call (tests call ``main`` often)."""
    global _HANDLER
    logger = logging.getLogger("saebench_sanity")
    if _HANDLER is not None:
        logger.removeHandler(_HANDLER)
    _HANDLER = logging.StreamHandler(sys.stderr)
    _HANDLER.setFormatter(_LogFormatter())
    logger.addHandler(_HANDLER)
    logger.setLevel(logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(max(verbose, 0), 2)])


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line and exit code 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_INPUT)


def build_parser() -> argparse.ArgumentParser:
    from saebench_sanity import __version__

    parser = _Parser(prog="saebench", description="Does this sparse autoencoder beat a random baseline? "
                     "Train SAEs and their random baselines on the same data and compare them.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"saebench-sanity {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    _verbosity_options(parser, 0)
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
    p.add_argument("--jobs", type=bounded_int(1, 1024), default=None, metavar="N", help="cohorts in parallel: local: a pool "
                   "of N processes (default: one per core, 1 = in this process); ray: the CPUs of the Ray instance it starts")
    p.add_argument("--executor", default="local", metavar="NAME", help="what runs the cohorts: local (this machine, default) "
                   "or ray (a Ray cluster: pip install \"saebench-sanity[ray]\"; see docs/distributed.md)")
    p.add_argument("--address", metavar="ADDRESS", help="--executor ray: host:port of a Ray cluster's head, or auto (the "
                   "cluster `ray start` runs here); default: start a local Ray instance")
    p.add_argument("--threads", type=bounded_int(1, 1024), metavar="N", help="CPU threads per process: torch's, and the BLAS / OpenMP "
                   "pools of numpy, scipy and scikit-learn (default: torch's)")
    p.add_argument("--device", metavar="D", help="where SAEs train: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps "
                   "(default: the config's run.device, else auto)")
    p.add_argument("--dtype", metavar="T", help="training precision of every set: float32, float64, bfloat16 (default: each set's training_dtype, else the config's run.dtype, else float32)")
    p.add_argument("--leaderboards", metavar="DIR", help="where to write <name>.md/.csv/.json (default: OUT/leaderboards)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("list", help="every registered set, architecture, mode, metric... and plugin problems")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="exit 1 when any plugin has a problem (for a plugin's CI)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser("leaderboard", help="render leaderboard files from a results directory")
    p.add_argument("--results", default="saebench-runs/default", metavar="DIR", help="results directory (a run's output_dir)")
    p.add_argument("--out", default="leaderboards", metavar="DIR", help="where to write <name>.md/.csv/.json and <name>/*.png")
    p.add_argument("--name", default=None, help="file name stem of the leaderboard (default: the --family, else synthetic)")
    p.add_argument("--family", default=None, metavar="F", help="only the activation sets of this family (synthetic, real, ...)")
    p.add_argument("--check", action="store_true", help="recompute and exit 1 if the files under --out differ")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (with --check: do not look for them)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    for command, module in EXTENSIONS.items():
        ext = _extension(module)
        if ext is not None:
            ext.add_parser(sub)
    for subparser in sub.choices.values():  # `saebench run -v` as well as `saebench -v run`
        _verbosity_options(subparser, argparse.SUPPRESS)
    return parser


def _verbosity_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output (-v: progress notes, -vv: debug)")
    parser.add_argument("--quiet", action="store_true", default=default if default is argparse.SUPPRESS else False,
                        help="only errors (no progress, no notes)")


# -- commands ----------------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from saebench_sanity.registry import get_registry

    registry = get_registry()
    items = [spec.describe() for spec in registry.all_items()]
    plugins: list[dict[str, Any]] = [{"name": p.name, "package": p.package, "version": p.version, "hooks": list(p.hooks)}
                                     for p in registry.plugins.values()]
    problems = [{"plugin": p.plugin, "message": p.message} for p in registry.problems]
    if args.json:
        sys.stdout.write(json.dumps({"items": items, "plugins": plugins, "problems": problems},
                                    indent=2, sort_keys=True, default=str) + "\n")
        return EXIT_FAIL if args.strict and problems else EXIT_OK
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
    for problem in registry.problems:
        console.print(f"[red]problem[/red] {problem}", highlight=False)
    return EXIT_FAIL if args.strict and problems else EXIT_OK


def apply_device_options(cfg, device: str | None, dtype: str | None):
    """``cfg`` with ``--device`` / ``--dtype`` applied after checking their names (one-line error,
    exit 2); cheap: nothing is resolved against this machine."""
    import dataclasses

    from saebench_sanity.devices import check_device_name, check_dtype_name

    if device is not None:
        check_device_name(device, "--device")
    if dtype is not None:  # every set of this run trains in it, whatever its own training_dtype
        cfg = cfg.with_dtype(check_dtype_name(dtype, "--dtype"))
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    return cfg


def check_device_here(cfg, device_given: bool, dtype_given: bool) -> None:
    """Resolve ``cfg``'s device on this machine and check that it can train every set's dtype
    (one-line error naming the option, exit 2), before anything is planned or trained."""
    from saebench_sanity.devices import resolve_device, resolve_dtype

    resolved = resolve_device(cfg.device, "--device" if device_given else "run.device")
    resolve_dtype(cfg.dtype, resolved, "--dtype" if dtype_given else "run.dtype")
    for name in cfg.sets:
        if cfg.dtype_for(name) != cfg.dtype:
            resolve_dtype(cfg.dtype_for(name), resolved, f"sets.{name}.training_dtype")


def only_sets(cfg, names: list[str]):
    """``cfg`` narrowed to the activation sets ``names`` (``--sets``), each of which the suite must list."""
    import dataclasses

    unknown = [n for n in names if n not in cfg.sets]
    if unknown:
        raise SaebenchError(f"--sets: {', '.join(unknown)} not in this suite's sets ({', '.join(cfg.sets)}); "
                            "pick from those or pass --config")
    return dataclasses.replace(cfg, sets=tuple(n for n in cfg.sets if n in names))


def preflight(cfg: Any, registry: Any, *, out: str | None, leaderboards: str | None,
              metrics: list[str] | None = None) -> list[str]:
    """Everything about a run that can be refused before anything is imported, planned or
    trained (each a one-line SaebenchError, exit 2): names and spec parameters
    (``config.check_names``), output folders (writable), sizes of sets that declare ``d_in``
    (bounds and the memory estimate). Returns the precedence notes to print with ``-v`` (a set's
    recommendation that a ``[training]`` / ``[run]`` value the user wrote replaces)."""
    from saebench_sanity.config import check_names
    from saebench_sanity.harness.plan import arch_sparsity

    check_names(cfg, registry)
    for name in metrics or ():
        registry.get("metric", name)
    check_writable_dir(out or cfg.output_dir, "--out" if out else "run.output_dir")
    if leaderboards:
        check_writable_dir(leaderboards, "--leaderboards")
    notes = []
    for set_name in cfg.sets:
        spec = registry.get("activation_set", set_name)
        recommended = dict(getattr(spec, "training", {}) or {})
        cfg.training_for(set_name, recommended)  # cross-field rules of the merged budget
        d_in = getattr(spec, "d_in", None)
        if isinstance(d_in, int) and not isinstance(d_in, bool) and d_in > 0:
            d_sae, target = cfg.size_for(set_name, d_in, recommended)
            for arch in cfg.architectures:  # a per-architecture target L0 that the architecture cannot take
                arch_sparsity(cfg, registry.get("architecture", arch), set_name, d_sae, target)
        notes += cfg.overridden_by_set(set_name, recommended)
    return notes


def _first_metric_error(result: Any) -> tuple[str, str, str] | None:
    """(cell label, metric, message) of the first metric that errored in this run."""
    for o in result.outcomes:
        for metric, info in o.metrics.items():
            if info.get("status") == "error":
                message = ""
                try:
                    record = result.store.load_result(o.key) or {}
                    message = next((m.get("error") or "" for m in record.get("metrics", {}).values()
                                    if m.get("name") == metric and m.get("status") == "error"), "")
                except Exception:  # noqa: BLE001 - the message is a courtesy; the count is what matters
                    pass
                return o.label, metric, message
    return None


def write_run_leaderboards(result: Any, registry: Any, *, plots: bool = True, leaderboards: str | None = None) -> None:
    """After ``harness.run.run``: write the run's leaderboards to ``<leaderboards>/<name>.*``
    (default ``<output_dir>/leaderboards``; one board per family when the run mixes families,
    ``harness.run.leaderboard_groups``) from what its results folder holds, and fill
    ``result.leaderboard_paths``, ``collected`` (every set, for the terminal report) and ``table``."""
    from pathlib import Path

    from saebench_sanity.harness.run import leaderboard_dir, leaderboard_groups
    from saebench_sanity.leaderboard import aggregate, render
    from saebench_sanity.paths import check_leaderboard_names

    cfg = result.plan.config
    lb_dir = Path(leaderboards) if leaderboards else leaderboard_dir(cfg)
    paths: list[Any] = []
    run_info, records = aggregate.load(cfg.output_dir)  # read once, for every leaderboard and the report
    declared = registry.declared_scores()  # for records older than a ScoreInfo field
    for name, family, sets in leaderboard_groups(cfg, registry):
        col = aggregate.from_records(run_info, records, sets=sets, declared=declared)
        check_leaderboard_names(name, col.sets, cfg.output_dir)  # they become file names
        paths += render.write(col, name=name, results=str(cfg.output_dir), out=str(lb_dir), plots=plots, family=family)
    col = aggregate.from_records(run_info, records, declared=declared)
    result.leaderboard_paths, result.collected, result.table = paths, col, aggregate.summary(col)


def cmd_run(args: argparse.Namespace) -> int:
    from saebench_sanity.harness.run import load_config, run
    from saebench_sanity.registry import get_registry

    chosen = [flag for flag, given in (("--config", args.config), ("--quick", args.quick), ("--suite", args.suite)) if given]
    if len(chosen) > 1:
        raise SaebenchError(f"{' and '.join(chosen)} each choose a suite; pass only one")
    cfg = load_config(args.config, args.quick, suite=args.suite)
    if args.sets:
        cfg = only_sets(cfg, args.sets)
    # names now; the device is resolved after the preflight
    cfg = apply_device_options(cfg, args.device, args.dtype)
    registry = get_registry()
    for problem in registry.problems:
        log.warning("%s", problem)
    from saebench_sanity.activations.real import register_user_sets
    from saebench_sanity.config import user_set_recipes

    register_user_sets(user_set_recipes(cfg), registry)  # [sets.NAME] tables with a model: new real sets
    # the executor first: Ray missing or an address nobody answers is one line before any work
    executor = registry.get("executor", args.executor).build(jobs=args.jobs, address=args.address)
    notes = preflight(cfg, registry, out=args.out, leaderboards=args.leaderboards, metrics=args.metrics)
    for note in notes:  # your value applies: shown with -v
        log.info("%s", note)
    log.info("config %s checked: %d set(s) x %d architecture(s) x %d mode(s) x %d seed(s) = %d cells -> %s", cfg.source,
             len(cfg.sets), len(cfg.architectures), len(cfg.modes), len(cfg.seeds),
             len(cfg.sets) * len(cfg.architectures) * len(cfg.modes) * len(cfg.seeds), args.out or cfg.output_dir)
    if args.executor == "local":  # other executors resolve the device where the cells train
        check_device_here(cfg, args.device is not None, args.dtype is not None)  # imports torch: after the cheap checks
    if args.threads:
        from saebench_sanity.executors.base import set_cpu_threads

        set_cpu_threads(args.threads)
    quiet = bool(getattr(args, "quiet", False))
    if quiet:
        reporter = None
    else:
        from saebench_sanity.report import RichReporter

        reporter = RichReporter()
    result = run(cfg, registry, out=args.out, force=args.force, metrics=args.metrics, jobs=args.jobs,
                 reporter=reporter, executor=executor,
                 then=lambda done: write_run_leaderboards(done, registry, plots=not args.no_plots,
                                                          leaderboards=args.leaderboards))
    if not quiet:
        from saebench_sanity.report import print_final, table_console

        print_final(table_console(), result)
    failed = [o for o in result.outcomes if o.status != "ok"]
    if failed and all(_says_disk_full(o.error or "") for o in failed):
        raise disk_full(None, result.store.root)
    errored = _first_metric_error(result)
    n_errors = sum(m.get("status") == "error" for o in result.outcomes for m in o.metrics.values())
    if failed or errored:
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(result.outcomes)} cells failed (first: {failed[0].label}: {failed[0].error})")
        if errored:
            label, metric, message = errored
            parts.append(f"{n_errors} metric result(s) errored (first: {label} {metric}: {message or 'see its record'})")
        sys.stderr.write(f"error: {'; '.join(parts)}; everything else is stored in {result.store.root}; "
                         "re-run to retry them\n")
        return EXIT_INCOMPLETE
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from saebench_sanity.leaderboard import aggregate, render
    from saebench_sanity.paths import check_leaderboard_names, safe_name
    from saebench_sanity.registry import get_registry

    name = args.name or args.family or "synthetic"
    safe_name("leaderboard name", name)  # before the --out probe creates anything
    if not args.check:  # --check only reads
        check_writable_dir(args.out, "--out")
    sets = None
    if args.family:
        from saebench_sanity.harness.run import sets_of_family

        sets = sets_of_family(get_registry(), args.family)
        if not sets:
            raise SaebenchError(f"no registered activation set has family {args.family!r}; see `saebench list`")
    # what the installed metrics declare, for records older than a ScoreInfo field
    col = aggregate.collect(args.results, sets=sets, declared=get_registry().declared_scores())
    if sets is not None and not col.sets:  # an empty board written with exit 0 would look like a result
        held = aggregate.collect(args.results).sets
        raise SaebenchError(f"the results under {args.results!r} hold no activation set of family {args.family!r} "
                            f"(they hold {', '.join(held) or 'none'}); pass the family of those sets, or no --family")
    check_leaderboard_names(name, col.sets, args.results)  # names that become files: refused, exit 2
    if args.check:
        differ = render.check(col, name=name, results=args.results, out=args.out, family=args.family,
                              plots=not args.no_plots)
        if differ:
            again = render.command_line(args.results, args.out, name, args.family, plots=not args.no_plots)
            sys.stderr.write(f"error: leaderboard out of date: {', '.join(differ)} differ from the recorded results; "
                             f"regenerate with `{again}`\n")
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
    setup_logging(int(getattr(args, "verbose", 0) or 0), bool(getattr(args, "quiet", False)))
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
        return _report(exc, debug, getattr(exc, "exit_code", EXIT_INPUT))
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback with --debug
        if _is_disk_full(exc):
            return _report(disk_full(exc, getattr(args, "out", None)), debug, EXIT_INPUT)
        if debug:
            import traceback

            traceback.print_exc()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {msg} (re-run with --debug for the traceback)\n")
        return EXIT_FAIL


def _report(exc: BaseException, debug: bool, code: int) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sys.stderr.write(f"error: {msg}\n")
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
