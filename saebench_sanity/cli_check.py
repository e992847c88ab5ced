"""CLI glue for ``saebench check`` (logic in ``saebench_sanity.check``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from saebench_sanity.check import option_defaults
from saebench_sanity.cli import bounded_float, bounded_int, check_writable_file
from saebench_sanity.config import MAX_SEED, MAX_STEPS


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(value: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers") from None
    if not seeds or not all(0 <= s <= MAX_SEED for s in seeds):
        raise argparse.ArgumentTypeError(f"{value!r}: seeds are integers in 0..{MAX_SEED:,}, e.g. 0,1,2")
    return seeds


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="does YOUR SAE (SAELens format) beat the random baselines?",
        description="Train the study's random baselines with your SAE's architecture, size and sparsity on an "
                    "activation set, score all on the same held-out data and print verdicts (rule: "
                    "docs/verdict-rule.md). Your SAE gets activations in the space it was trained in (raw, unless its "
                    "cfg records a normalization). Trained baselines are cached by identity, so checking another SAE "
                    "of the same shape on the same set trains nothing new (baselines cached from another build of the "
                    "set's store are trained again). Exit 0: PASS (beats every baseline on "
                    "every chosen score); 1: FAIL or INCONCLUSIVE; 3: NO VERDICT (nothing could be judged: every "
                    "row UNDERTRAINED, AT CHANCE, SEEDS or L0 NOT MATCHED); 2: bad input.")
    p.add_argument("target", help="SAELens SAE folder (cfg.json + sae_weights.safetensors), or a SAELens release name with --sae-id")
    p.add_argument("--sae-id", help="SAE id inside a SAELens pretrained release (needs internet), or the sub-folder of a "
                                    "local copy of a release")
    p.add_argument("--set", dest="set_name", help="activation set with the SAE's d_in (see `saebench list`); default: "
                   "the set a checkpoint of this suite names in its metadata, else one built from the SAE's metadata "
                   "(model_name, hook_name) over --corpus (the next five options describe that set and are refused "
                   "with --set)")
    # the derived set's defaults are CheckOptions' own: run_check refuses these options with --set
    # when they differ from them, so the two must not drift apart
    defaults = option_defaults()
    p.add_argument("--corpus", default=defaults["corpus"], help="corpus of a set built from the SAE's metadata: 'default' "
                   "(the embedded Python-docs corpus), a folder of .txt/.jsonl, or hf:<dataset> (default: default)")
    p.add_argument("--tokens", type=bounded_int(1, 10**12), default=defaults["n_train_tokens"],
                   help=f"training tokens of that set (default {defaults['n_train_tokens']:,})")
    p.add_argument("--eval-tokens", type=bounded_int(1, 10**10), default=defaults["n_eval_tokens"],
                   help=f"held-out tokens of that set (default {defaults['n_eval_tokens']:,})")
    p.add_argument("--context-len", type=bounded_int(2, 65_536), help="context length of that set (default: the SAE's training context)")
    p.add_argument("--model", help="model of that set (default: the SAE's metadata model_name; a hub id or folder)")
    p.add_argument("--arch", help="registered architecture to train the baselines as (needed when several share "
                   "the SAE's sae-lens class; default: the one matching the SAE's cfg)")
    p.add_argument("--device", default="cpu", help="where the baselines train and every SAE is scored: cpu (default), auto, cuda, cuda:N or "
                   "mps (saebench_sanity/devices.py); a set built on first use harvests on the CPU (build it first "
                   "with `saebench activations build ... --device cuda`)")
    p.add_argument("--dtype", default="float32", help="precision the baselines train in: float32 (default), float64 "
                   "(CPU/CUDA) or bfloat16; part of a cached baseline's identity")
    p.add_argument("--cache-dir", help="where trained baselines are cached (default $SAEBENCH_CACHE/check-baselines)")
    p.add_argument("--metrics", type=_csv, help="comma-separated metric names (default: every applicable metric)")
    p.add_argument("--modes", type=_csv, help="comma-separated baseline modes (default: every registered baseline)")
    p.add_argument("--seeds", type=_ints, default=(0, 1, 2), help="baseline seeds, each once (default 0,1,2; fewer than 3 "
                   "give no verdict)")
    p.add_argument("--steps", type=bounded_int(1, MAX_STEPS), help="maximum training steps per baseline (default: as the embedded suite that lists the set trains it, "
                        "else the set's recommendation; baselines stop early once their loss is level)")
    p.add_argument("--min-effect", type=bounded_float(0, 1e6), default=0.01, help="minimum effect for BEATS (default 0.01)")
    p.add_argument("--confidence", type=bounded_float(0.5, 1, hi_open=True), default=0.95,
                   help="one-sided confidence of the verdict bounds (default 0.95)")
    p.add_argument("--jobs", type=bounded_int(1, 1024), default=1,
                   help="baseline seeds trained and scored at once, each in its own process with cores/jobs torch "
                        "threads, as `saebench run --jobs` (default 1: one after the other in this process); the "
                        "report is the same whatever the number")
    p.add_argument("--json", dest="json_path", help="write the machine-readable report to this file")
    return p


def render(report: Any) -> None:
    from rich.table import Table

    from saebench_sanity.leaderboard.render import fmt as _fmt
    from saebench_sanity.leaderboard.render import fmt_bounds
    from saebench_sanity.report import STYLE, table_console

    console = table_console(200)
    table = Table(title=f"saebench check: {report.sae['source']} on {report.set_name} ({report.architecture})")
    for col in ("score", "dir", "chance", "your SAE", *report.baselines, "baseline", "d", "bounds", "verdict"):
        table.add_column(col)
    for r in report.rows:
        style = STYLE.get(r["verdict"], "")
        cells = [f"{r['metric']}.{r['score']}", r["direction"] or "", _fmt(r["chance"]), _fmt(r["sae"])]
        for m in report.baselines:
            b = r["baselines"][m]
            cells.append(f"{_fmt(b['mean'])}±{_fmt(b['sd'])}" + ("" if b["converged"] else "†"))
        cells += [r["baseline"] or "", _fmt(r["diff"]), fmt_bounds(r["lower"], r["upper"]),
                  f"[{style}]{r['verdict']}[/]" if style else r["verdict"]]
        table.add_row(*cells)
    console.print(table)
    for metric, reason in report.skipped.items():
        console.print(f"skipped {metric}: {reason}")
    console.print("† = a seed still improving at the end of training (UNDERTRAINED); verdict rule: docs/verdict-rule.md")
    console.print(f"baselines trained {report.sae.get('training_source', '?')} (stopping early once the loss is "
                  "level); steps per seed:")
    for mode, runs in report.training.items():
        seeds = ", ".join(f"s{r['seed']}: {r['steps']}/{r['max_steps']} steps, "
                          f"{'converged' if r['converged'] else 'NOT converged'}, L0 {_fmt(r['l0'])}"
                          + (" (cached)" if r["cached"] else "") for r in runs)
        console.print(f"baseline {mode}: {seeds}")
    for warning in report.warnings:
        console.print(f"[yellow]warning[/]: {warning}")
    console.print({
        "PASS": "[green]PASS[/]: beats every baseline on every score",
        "FAIL": "[bold red]FAIL[/]: some baseline is as good or better on some score (FAILS)",
        "INCONCLUSIVE": "[yellow]INCONCLUSIVE[/]: fails on no score but does not beat every baseline on every score",
        "NO VERDICT": "[magenta]NO VERDICT[/]: nothing could be judged, so this is neither a pass nor a fail (exit 3; "
                      "see the labels: SEEDS needs --seeds with at least 3 seeds; UNDERTRAINED needs more --steps; AT "
                      "CHANCE: neither your SAE nor a baseline is above chance on that score)",
    }[report.outcome])


def run(args: argparse.Namespace) -> int:
    if args.json_path:  # refused now, not after every baseline has trained
        check_writable_file(args.json_path, "--json")
    from saebench_sanity.check import CheckOptions, run_check
    from saebench_sanity.registry import get_registry

    opts = CheckOptions(target=args.target, set_name=args.set_name, sae_id=args.sae_id, arch=args.arch,
                        cache_dir=args.cache_dir, metrics=args.metrics, modes=args.modes, seeds=args.seeds,
                        steps=args.steps, min_effect=args.min_effect, confidence=args.confidence,
                        corpus=args.corpus, n_train_tokens=args.tokens, n_eval_tokens=args.eval_tokens,
                        context_len=args.context_len, model=args.model, device=args.device, dtype=args.dtype,
                        jobs=args.jobs)
    from rich.console import Console

    console = Console(stderr=True)
    report = run_check(opts, get_registry(), progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    render(report)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=float) + "\n")
    return report.exit_code
