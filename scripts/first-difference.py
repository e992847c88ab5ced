"""Where float training first differs between native and capped CPU kernels, op by op.

    python scripts/first-difference.py [--set study-variable-mini] [--arch relu] [--dtype float64]
                                       [--trace-steps 2] [--steps 400] [--unfuse OPS] [--out DIR]

The same one-cell run as scripts/kernel-drift.py (its config and its cap: torch and MKL at
SSE4.2), in two fresh processes, native and capped. In each, torch's dispatch mode records every
aten op of the set-up and of the first ``--trace-steps`` engine steps with the sha256 of its
tensor inputs (before) and of its outputs and inputs (after: in-place ops such as the fused Adam
step return nothing); the parameters are kept after each step of ``--steps`` that is 1, a power
of two, or the last (float64 copies, in memory). ``--unfuse uniform_`` (then
``uniform_,addcmul_``) writes those kernels as a multiply then an add in both runs, so the next
trace shows what differs after them. The script then prints the ops that got the
same inputs in both processes but gave different outputs (allocations of uninitialised memory
and the memory they hand out left out): the kernels that round differently. Then, per kept step, the largest difference of
each parameter relative to its largest magnitude: how training grows the first difference. Writes
only under --out (the two runs' configs, caches and outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _kernel_drift():
    spec = importlib.util.spec_from_file_location("kernel_drift", HERE / "kernel-drift.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def worker(config: str, out: str, trace_steps: int, steps: int, unfuse: list[str]) -> None:
    """In this process: the run of ``config`` with the trace; writes ``out``.json and ``out``.pt."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from saebench_sanity.cli import main
    from saebench_sanity.training import engine

    def digest(t: object) -> str | None:
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            return None
        return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]

    ops: list[tuple[str, list, list]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            flat = tree_flatten((args, kwargs or {}))[0]
            before = [digest(a) for a in flat]
            result = func(*args, **(kwargs or {}))
            if "empty" in str(func) and isinstance(result, torch.Tensor):
                result.zero_()  # uninitialised memory, the same in both runs (no op reads it before writing)
            ops.append((str(func), before, [digest(t) for t in tree_flatten(result)[0]] + [digest(a) for a in flat]))
            return result

    if "uniform_" in unfuse:  # a kernel found by an earlier trace, written as a multiply then an add
        def uniform_(self, a=0.0, b=1.0, generator=None):  # type: ignore[no-untyped-def]
            with torch.no_grad():
                return self.copy_(torch.rand(self.shape, dtype=self.dtype, generator=generator) * (b - a) + a)

        torch.Tensor.uniform_ = uniform_  # type: ignore[method-assign]
    if "addcmul_" in unfuse:
        def addcmul_(self, t1, t2, value=1):  # type: ignore[no-untyped-def]
            return self.add_(t1 * t2 * value if value != 1 else t1 * t2)

        torch.Tensor.addcmul_ = addcmul_  # type: ignore[method-assign]
    mode = Record()
    mode.__enter__()
    kept: dict[int, dict[str, torch.Tensor]] = {}
    step_fn = engine.CohortProgram.step

    def step(self, x, n_steps, i):  # type: ignore[no-untyped-def]
        nonlocal mode
        step_fn(self, x, n_steps, i)
        if i >= min(trace_steps, steps) and mode is not None:
            mode.__exit__(None, None, None)
            mode = None
        if i == 1 or i & (i - 1) == 0 or i == steps:
            kept[i] = {k: v.detach().to(torch.float64).clone() for k, v in self.params().items()}

    engine.CohortProgram.step = step
    main(["run", "--config", config, "--jobs", "1", "--no-plots", "--quiet"])
    Path(out + ".json").write_text(json.dumps(ops))
    torch.save(kept, out + ".pt")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="study-variable-mini")
    ap.add_argument("--arch", default="relu")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--trace-steps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--unfuse", default="", metavar="OPS", help="comma-separated: uniform_, addcmul_ written as a "
                    "multiply then an add in both runs, to find what differs next")
    ap.add_argument("--out", default="saebench-runs/first-difference")
    ap.add_argument("--worker", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker[0], args.worker[1], args.trace_steps, args.steps, args.unfuse.split(","))
        return 0
    kd = _kernel_drift()
    root = Path(args.out).resolve()
    runs = {}
    for kind in ("native", "capped"):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "run.toml"
        config.write_text(kd.TOML.format(out=folder / "out", set=args.set, arch=args.arch, dtype=args.dtype,
                                         steps=args.steps, match_l0="true"))
        env = {**os.environ, "SAEBENCH_CACHE": str(root / f"cache-{kind}"), **(kd.CAPPED if kind == "capped" else {})}
        subprocess.run([sys.executable, __file__, "--worker", str(config), str(folder / "trace"),
                        "--trace-steps", str(args.trace_steps), "--steps", str(args.steps)]
                       + ["--unfuse", args.unfuse], env=env, check=True)
        runs[kind] = folder / "trace"

    (n_ops, c_ops) = (json.loads(Path(str(runs[k]) + ".json").read_text()) for k in ("native", "capped"))
    print(f"{len(n_ops)} / {len(c_ops)} ops recorded (native / capped) over the set-up and {args.trace_steps} step(s)")
    for (name, before, after), (c_name, c_before, c_after) in zip(n_ops, c_ops):
        if name == c_name and before == c_before and after != c_after:
            print(f"  same inputs, other outputs: {name}")

    import torch

    native, capped = (torch.load(str(runs[k]) + ".pt") for k in ("native", "capped"))
    for i in sorted(native):
        diffs = ", ".join(f"{k} {float((native[i][k] - capped[i][k]).abs().max() / native[i][k].abs().max()):.1e}"
                          for k in sorted(native[i]))
        print(f"step {i:>6}: max |native - capped| / max |native|: {diffs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
