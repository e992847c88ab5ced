"""How far one SAE's training drifts when the CPU kernels round differently, in float32 and float64.

    python scripts/kernel-drift.py [--set study-variable-mini] [--arch jumprelu] [--steps 20,200,2000]
                                   [--dtypes float32,float64] [--no-match-l0] [--out saebench-runs/kernel-drift]
                                   [--env NAME=VALUE[;NAME=VALUE...]]

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
Writes only under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

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


def load(out: Path, steps: int) -> tuple[object, dict[str, float]]:
    """The cell's decoder weights (float64) and its recorded scores ``metric.score``."""
    import torch
    from safetensors.torch import load_file

    (record_path,) = list((out / "results").glob("*.json"))
    record = json.loads(record_path.read_text())
    assert record["training"]["steps"] == steps, f"{out}: trained {record['training']['steps']} steps, not {steps}"
    weights = load_file(str(out / "checkpoints" / record["key"] / "sae_weights.safetensors"))
    scores = {f"{m['name']}.{k}": float(v) for m in record["metrics"].values() if m.get("status") == "ok"
              for k, v in m["scores"].items()}
    scores["seconds"] = float(record["training"]["seconds"])
    return weights["W_dec"].to(torch.float64), scores


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
    args = ap.parse_args(argv)
    print(f"native against {' '.join(f'{k}={v}' for k, v in args.env.items())}")
    root = Path(args.out).resolve()
    print(f"{'dtype':<8} {'steps':>6} {'train s':>15} {'max |dW_dec| / max |W_dec|':>27}  "
          + "  ".join(f"{s:>34}" for s in SCORES))
    for dtype in args.dtypes.split(","):
        for steps in (int(s) for s in args.steps.split(",")):
            (w_a, s_a), (w_b, s_b) = (load(train(root, args.set, args.arch, dtype, steps, capped, not args.no_match_l0,
                                                      args.env), steps) for capped in (False, True))
            rel = float((w_a - w_b).abs().max() / w_a.abs().max())  # type: ignore[operator, union-attr]
            diffs = "  ".join(f"{s_a[s]:>10.6f} vs {s_b[s]:.6f} ({s_b[s] - s_a[s]:+.1e})" if s in s_a and s in s_b
                              else f"{'-':>34}" for s in SCORES)
            seconds = f"{s_a['seconds']:.1f} / {s_b['seconds']:.1f}"
            print(f"{dtype:<8} {steps:>6} {seconds:>15} {rel:>27.2e}  {diffs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
