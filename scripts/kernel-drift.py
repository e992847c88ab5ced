"""How far one SAE's training drifts when the CPU kernels round differently, in float32 and float64.

    python scripts/kernel-drift.py [--set study-variable-mini] [--arch jumprelu] [--steps 20,200,2000]
                                   [--dtypes float32,float64] [--no-match-l0] [--out saebench-runs/kernel-drift]
                                   [--env NAME=VALUE[;NAME=VALUE...]] [--record FILE] [--against FILE]

"Another machine" is emulated as in scripts/other-machine-verdicts.sh: torch's and MKL's kernels
capped at SSE4.2 (ATEN_CPU_CAPABILITY=default, MKL_ENABLE_INSTRUCTIONS=SSE4_2) with the set's data
generated afresh under those kernels (its own SAEBENCH_CACHE). For each dtype and step count the
trained SAE of seed 0 (mode ``trained``, early stop off, so both runs take exactly that many
steps) is trained with `saebench run` under native and under capped kernels, each in its own
process; the script prints the largest difference of the decoder weights (relative to their
largest magnitude) and of the recorded scores between the two, and both runs' training
seconds (native / other). ``--no-match-l0`` trains without the matched-L0 controller (``training.match_l0 =
false``: the architecture's own sparsity coefficient throughout). Used to decide whether float64
training makes results agree across machines (docs/limitations.md). ``--env`` replaces the cap with
other settings of the second run's environment, e.g. ``--env MKL_CBWR=COMPATIBLE`` to see what pinning
MKL's code branch changes on this machine; its folders are then named after those settings.

Across machines (two makes of CPU cannot run in one process tree): ``--record FILE`` adds each run's
fingerprint to FILE (JSON: the SHA-256 of the saved decoder's bytes, its largest magnitude, 16 fixed
projections of it, the recorded scores and the processor that trained it), keyed by set, architecture,
dtype, steps and environment; ``--against FILE`` compares this machine's runs with another machine's
recorded ones of the same key and prints, per run, whether the decoders are the same bits and else how
far apart their projections and scores are. Writes only under --out and to the --record file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CAPPED = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}
SCORES = ("reconstruction.explained_variance", "ground_truth.recovery", "ground_truth.mcc")

TOML = """[run]
name = "kernel-drift"
output_dir = "{out}"
sets = ["{set}"]
architectures = ["{arch}"]
modes = ["trained"]
seeds = [0]
metrics = ["reconstruction", "ground_truth"]
dtype = "{dtype}"

[training]
early_stop = false
curve_every = 10
match_l0 = {match_l0}

# under the set's own table, which wins over [training] and the set's recommendation
[sets.{set}]
max_steps = {steps}
batch_size = 256
lr = 3e-3
"""


def env_label(env: dict[str, str]) -> str:
    """A folder-name-safe label for a set of environment settings ("capped" for the default cap)."""
    if env == CAPPED:
        return "capped"
    return "-".join(f"{k}={v}" for k, v in sorted(env.items())).replace(",", "+").replace("/", "_")


def parse_env(text: str) -> dict[str, str]:
    """``NAME=VALUE;NAME=VALUE`` (values may hold commas, as MKL_CBWR=AVX2,STRICT does)."""
    env = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=VALUE")
        env[name] = value
    if not env:
        raise argparse.ArgumentTypeError("empty: expected NAME=VALUE[;NAME=VALUE...]")
    return env


def train(root: Path, set_name: str, arch: str, dtype: str, steps: int, capped: bool, match_l0: bool = True,
          cap: dict[str, str] = CAPPED) -> Path:
    """Run the one-cell config in a fresh process (under ``cap`` when ``capped``); its output folder."""
    kind = env_label(cap) if capped else "native"
    folder = root / f"{set_name}-{arch}-{dtype}-{steps}-{kind}{'' if match_l0 else '-no-match-l0'}"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "run.toml"
    config.write_text(TOML.format(out=folder / "out", set=set_name, arch=arch, dtype=dtype, steps=steps,
                                  match_l0=str(match_l0).lower()))
    env = dict(os.environ)
    env["SAEBENCH_CACHE"] = str(root / f"cache-{kind}")
    if capped:
        env.update(cap)
    subprocess.run([sys.executable, "-m", "saebench_sanity.cli", "run", "--config", str(config), "--jobs", "1",
                    "--no-plots", "--quiet", "--leaderboards", str(folder / "boards")], env=env, check=True)
    return folder / "out"


def load(out: Path, steps: int) -> tuple[Any, dict[str, Any]]:
    """The cell's decoder weights (as saved: float32 or float64) and its recorded scores ``metric.score``
    (with ``seconds``, its training time, and ``cpu_kernels`` and ``threads``, what the record says
    trained it)."""
    from safetensors.torch import load_file

    (record_path,) = list((out / "results").glob("*.json"))
    record = json.loads(record_path.read_text())
    assert record["training"]["steps"] == steps, f"{out}: trained {record['training']['steps']} steps, not {steps}"
    weights = load_file(str(out / "checkpoints" / record["key"] / "sae_weights.safetensors"))
    scores = {f"{m['name']}.{k}": float(v) for m in record["metrics"].values() if m.get("status") == "ok"
              for k, v in m["scores"].items()}
    scores["seconds"] = float(record["training"]["seconds"])
    scores["cpu_kernels"] = record["training"].get("cpu_kernels")
    scores["threads"] = record["training"].get("threads")
    return weights["W_dec"], scores


N_PROJECTIONS = 16


def fingerprint(w_dec: Any, scores: dict[str, Any]) -> dict[str, Any]:
    """What another machine's run is compared with: the decoder's bytes hashed (equal hashes: the same
    bits), its largest magnitude and its projections on ``N_PROJECTIONS`` fixed unit directions (how
    far apart when not equal), the scores and the kernels. The directions are the activation
    fingerprint's (``activations.fingerprint.projections``: signs from SHA-256, so every machine
    has the same ones); the float64 projections themselves may differ between machines in their
    last bits, far below any difference they report."""
    import torch

    from saebench_sanity.activations.fingerprint import projections

    w = w_dec.detach().cpu().contiguous()
    flat = w.to(torch.float64).reshape(-1)
    return {"w_dec_sha256": hashlib.sha256(w.numpy().tobytes()).hexdigest(),
            "w_dec_dtype": str(w.dtype).removeprefix("torch."), "w_dec_shape": list(w.shape),
            "w_dec_max": float(flat.abs().max()),
            "projections": [float(v) for v in flat @ projections(flat.numel(), N_PROJECTIONS)],
            "scores": {k: v for k, v in scores.items() if k not in ("seconds", "cpu_kernels", "threads")},
            "cpu_kernels": scores.get("cpu_kernels"), "threads": scores.get("threads")}


def compare(mine: dict[str, Any], theirs: dict[str, Any]) -> str:
    """One line: "same bits", or how far this machine's run is from another machine's of the same key:
    the root mean square of the weights' difference, estimated from the projections (each one's
    expected square is the mean square of the difference), relative to the largest weight; and the
    score differences."""
    if mine["w_dec_sha256"] == theirs["w_dec_sha256"]:
        return "same bits"
    if mine["w_dec_shape"] != theirs["w_dec_shape"] or mine["w_dec_dtype"] != theirs["w_dec_dtype"]:
        return f"not the same cell: {theirs['w_dec_dtype']} {theirs['w_dec_shape']} there"
    # a float32 run's last bits depend on the thread count too: a difference then says nothing of the kernels
    threads = ("" if mine.get("threads") == theirs.get("threads")
               else f"  (threads {mine.get('threads')} here, {theirs.get('threads')} there)")
    squares = [(a - b) ** 2 for a, b in zip(mine["projections"], theirs["projections"], strict=True)]
    rms = (sum(squares) / len(squares)) ** 0.5
    scores = "  ".join(f"{k} {mine['scores'][k] - theirs['scores'][k]:+.1e}"
                       for k in SCORES if k in mine["scores"] and k in theirs["scores"])
    return f"differs: rms {rms / theirs['w_dec_max']:.1e} of the largest weight  {scores}".rstrip() + threads


def record_key(set_name: str, arch: str, dtype: str, steps: int, label: str, match_l0: bool) -> str:
    """A run's key in a --record file: everything that defines it except the machine."""
    return f"{set_name}/{arch}/{dtype}/{steps}/{label}{'' if match_l0 else '/no-match-l0'}"


def write_record(path: Path, runs: dict[str, dict[str, Any]]) -> None:
    """Merge ``runs`` into the --record file (created if missing; a key recorded again is replaced)."""
    data: dict[str, Any] = (json.loads(path.read_text()) if path.exists()
                            else {"format": "saebench-kernel-drift/1", "runs": {}})
    data["runs"].update(runs)
    data["runs"] = dict(sorted(data["runs"].items()))
    path.write_text(json.dumps(data, indent=1) + "\n")


def busy_warning(load: float | None = None) -> str | None:
    """A warning line when the machine is already busy (``executors.base.oversubscription``: each
    run is one process at torch's default threads, one per core); None otherwise. The runs'
    ``saebench run`` is ``--quiet``, so its own warning would not show."""
    from saebench_sanity.executors.base import default_jobs, machine_load, oversubscription

    cores = default_jobs()
    load = machine_load() if load is None else load
    if load is None or oversubscription(1, cores, cores=cores, load=load) is None:
        return None
    return (f"warning: the machine's load is already {load:.1f} on {cores} core(s) and each run trains at {cores} "
            "torch threads, which wait for busy cores: the 'train s' column will be slow (two of these scripts "
            "at once trained 800 steps in ~160 s against ~6 s alone); the weights do not depend on the load")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="study-variable-mini")
    ap.add_argument("--arch", default="jumprelu")
    ap.add_argument("--steps", default="20,200,2000")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--no-match-l0", action="store_true", help="train without the matched-L0 controller")
    ap.add_argument("--out", default="saebench-runs/kernel-drift")
    ap.add_argument("--env", type=parse_env, default=CAPPED,
                    help="the second run's environment settings instead of the SSE4.2 cap, NAME=VALUE;...")
    ap.add_argument("--record", type=Path, default=None, metavar="FILE",
                    help="add each run's fingerprint to this JSON file (for --against on another machine)")
    ap.add_argument("--against", type=Path, default=None, metavar="FILE",
                    help="compare each run with another machine's fingerprints of the same key (a --record file)")
    args = ap.parse_args(argv)
    theirs: dict[str, dict[str, Any]] = {}
    if args.against is not None:
        try:
            theirs = json.loads(args.against.read_text())["runs"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"--against {args.against}: not a --record file of this script ({exc}); "
                  "write one with --record FILE", file=sys.stderr)
            return 2
    busy = busy_warning()
    if busy:
        print(busy, file=sys.stderr)
    print(f"native against {' '.join(f'{k}={v}' for k, v in args.env.items())}")
    root = Path(args.out).resolve()
    print(f"{'dtype':<8} {'steps':>6} {'train s':>15} {'max |dW_dec| / max |W_dec|':>27}  "
          + "  ".join(f"{s:>34}" for s in SCORES))
    for dtype in args.dtypes.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            (w_a, s_a), (w_b, s_b) = (load(train(root, args.set, args.arch, dtype, steps, capped, not args.no_match_l0,
                                                      args.env), steps) for capped in (False, True))
            a64, b64 = (w.double() for w in (w_a, w_b))
            rel = float((a64 - b64).abs().max() / a64.abs().max())
            diffs = "  ".join(f"{s_a[s]:>10.6f} vs {s_b[s]:.6f} ({s_b[s] - s_a[s]:+.1e})" if s in s_a and s in s_b
                              else f"{'-':>34}" for s in SCORES)
            seconds = f"{s_a['seconds']:.1f} / {s_b['seconds']:.1f}"
            print(f"{dtype:<8} {steps:>6} {seconds:>15} {rel:>27.2e}  {diffs}", flush=True)
            runs = {record_key(args.set, args.arch, dtype, steps, label, not args.no_match_l0): fingerprint(w, sc)
                    for label, w, sc in (("native", w_a, s_a), (env_label(args.env), w_b, s_b))}
            for key, mine in runs.items():
                if args.against is not None:
                    print(f"    {key}: {compare(mine, theirs[key]) if key in theirs else 'not in ' + str(args.against)}",
                          flush=True)
            if args.record is not None:
                write_record(args.record, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
