"""Harvest speed, bytes per token and peak memory of activation stores at growing sizes.

    python scripts/activation-store-scale.py --tokens 1000000,10000000 [--work DIR] [--dtype bfloat16]

For each size a tiny random Llama (width 32, 2 layers, saved to a local folder) is harvested at
``resid_post.1`` over a local corpus (the standard library's ``.py`` sources, one JSON line per
file in ``.jsonl`` files, so the build reads it through the streamed folder reader), with
massive-activation flags at the user-set default ratio 10, in a fresh process that reports its
peak resident memory (``ru_maxrss``); a second fresh process reads the built set as training does
(one shuffled pass over every training row through ``StoreReader.iter_batches``, the bounded
shuffle buffer, then 100 TopK training steps on it) and reports its peak memory. Peak memory that
stays flat while the set grows is the claim checked: token ids go to a file, shards are
streamed, never held together. Prints one Markdown table row per size. ``--phases`` instead
builds each size once more and prints the resident memory (current / peak) after tokenizing,
every 150th shard and the manifest: where a build's peak comes from.

The model is tiny so that the measurement is about the store, not the model: harvest tokens/s
here is an upper bound of the store's own overhead, not a speed for a real model.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

CONTEXT_LEN = 128


def _corpus(folder: Path, chars: int) -> Path:
    """Stdlib sources (sorted relative paths, site-packages left out: reproducible) as ``.jsonl``
    files of 500 documents each, until ``chars`` characters."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return folder
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted((p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts),
                   key=lambda p: p.relative_to(root).as_posix())
    total, lines, n_file = 0, [], 0
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            continue
        lines.append(json.dumps({"text": text}))
        total += len(text)
        if len(lines) == 500 or total >= chars:
            (folder / f"{n_file:05d}.jsonl").write_text("\n".join(lines) + "\n")
            lines, n_file = [], n_file + 1
        if total >= chars:
            break
    if lines:
        (folder / f"{n_file:05d}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _set(work: Path, n_tokens: int, dtype: str):
    from saebench_sanity.activations.real import RealActivationSet

    return RealActivationSet(f"scale-{n_tokens}", root=work / "stores", model=str(work / "tiny"),
                             hook_point="resid_post.1", corpus=str(work / "corpus"), context_len=CONTEXT_LEN,
                             n_train_contexts=math.ceil(n_tokens / (CONTEXT_LEN - 1)), n_eval_contexts=64,
                             contexts_per_shard=64, dtype=dtype, batch_size=16, massive_norm_ratio=10.0)


def _child_build(work: Path, n_tokens: int, dtype: str) -> dict:
    import resource
    import time

    import torch

    torch.set_num_threads(1)
    aset = _set(work, n_tokens, dtype)
    if aset.path.exists():  # measure a build from scratch, not a resume
        shutil.rmtree(aset.path)
    t0 = time.perf_counter()
    aset.build(progress=False)
    seconds = time.perf_counter() - t0
    log = json.loads((aset.path / "build-log.json").read_text())
    m = aset.reader.manifest
    disk = sum(p.stat().st_size for p in (aset.path / "shards").glob("train-*.safetensors"))
    return {"train_tokens": m["n_train_tokens"], "harvest_tok_s": log["tokens_per_second"],
            "harvest_seconds": log["seconds"], "bytes_per_token": disk / m["n_train_tokens"],
            "build_seconds": round(seconds, 1), "corpus_documents_read": m["corpus"]["n_documents"],
            "massive_train_flagged": m["massive"]["n_train_flagged"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mb() -> tuple[int, int]:
    """``(current, peak)`` resident memory of this process in MB (Linux ``/proc/self/status``)."""
    fields = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith(("VmRSS", "VmHWM"))}
    return fields["VmRSS"] // 1024, fields["VmHWM"] // 1024


def _child_phases(work: Path, n_tokens: int, dtype: str) -> dict:
    """A build from scratch with its resident memory (current, peak) read after each phase:
    tokenization and split, every 150th shard, the manifest (the store's functions wrapped)."""
    import torch

    import saebench_sanity.activations.store as st

    torch.set_num_threads(1)
    phases: list[tuple[str, tuple[int, int]]] = []
    recipe, shard, finish = st.recipe_contexts, st._build_shard, st._finish_manifest
    count = [0]

    def recipe_contexts(*a, **k):
        phases.append(("before tokenizing", _rss_mb()))
        out = recipe(*a, **k)
        phases.append(("after tokenizing and splitting", _rss_mb()))
        return out

    def build_shard(*a, **k):
        shard(*a, **k)
        count[0] += 1
        if count[0] % 150 == 1:
            phases.append((f"after shard {count[0]}", _rss_mb()))

    def finish_manifest(*a, **k):
        out = finish(*a, **k)
        phases.append(("after the manifest", _rss_mb()))
        return out

    st.recipe_contexts, st._build_shard, st._finish_manifest = recipe_contexts, build_shard, finish_manifest
    aset = _set(work, n_tokens, dtype)
    if aset.path.exists():
        shutil.rmtree(aset.path)
    aset.build(progress=False)
    return {"phases": phases, "shards": count[0]}


def _child_train(work: Path, n_tokens: int, dtype: str) -> dict:
    import resource
    import time

    import torch

    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.registry import get_registry
    from saebench_sanity.training.trainer import train_cell

    torch.set_num_threads(1)
    aset = _set(work, n_tokens, dtype)
    t0 = time.perf_counter()
    rows = sum(b.shape[0] for b in aset.reader.iter_batches(4096, seed=0, loop=False, normalize=True))
    read_seconds = time.perf_counter() - t0
    reg = get_registry()
    train_cell(reg.get("architecture", "topk"), reg.get("training_mode", "trained"), aset, d_sae=128, target_l0=8,
               arch_overrides={}, mode_params={}, training=TrainingConfig(max_steps=100, batch_size=1024, lr=1e-3),
               seed=0)
    return {"rows_read": rows, "read_rows_s": rows / read_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="1000000,10000000", help="comma-separated training token counts")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "float16", "bfloat16"))
    ap.add_argument("--phases", action="store_true",
                    help="instead of the table: one build per size, resident memory (current / peak MB) after each phase")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "TOKENS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="store-scale-"))
    if args.child:
        kind, n = args.child[0], int(args.child[1])
        out = {"build": _child_build, "train": _child_train, "phases": _child_phases}[kind](work, n, args.dtype)
        print(json.dumps(out))
        return
    sizes = [int(t) for t in args.tokens.split(",")]
    if not (work / "tiny").is_dir():
        from saebench_sanity.models.tiny import save_tiny_llama

        save_tiny_llama(work / "tiny", hidden=32, layers=2)
    _corpus(work / "corpus", chars=int(max(sizes) * 3.0) + 400_000)  # ~2.5 chars per token of the tiny BPE
    if args.phases:
        for n in sizes:
            cmd = [sys.executable, __file__, "--work", str(work), "--dtype", args.dtype, "--child", "phases", str(n)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"phases {n} failed:\n{done.stderr[-2000:]}")
            res = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{n:,} tokens ({res['shards']} shards): " + "; ".join(f"{name} {cur} / {peak} MB"
                                                                        for name, (cur, peak) in res["phases"]))
        return
    print(f"work folder {work}; tiny Llama width 32, resid_post.1, {CONTEXT_LEN}-token contexts, {args.dtype} storage, "
          "massive flags at ratio 10; one torch thread")
    print("| train tokens | harvest tok/s | build s (tokenize + harvest + manifest) | bytes/token on disk | "
          "peak RSS building (MB) | read rows/s | peak RSS reading + training (MB) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        res = {}
        for kind in ("build", "train"):
            cmd = [sys.executable, __file__, "--work", str(work), "--dtype", args.dtype, "--child", kind, str(n)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{kind} {n} failed:\n{done.stderr[-2000:]}")
            res[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        b, t = res["build"], res["train"]
        print(f"| {b['train_tokens']:,} | {b['harvest_tok_s']:,.0f} | {b['build_seconds']:,.0f} | "
              f"{b['bytes_per_token']:.1f} | {b['peak_rss_mb']:,.0f} | {t['read_rows_s']:,.0f} | "
              f"{t['peak_rss_mb']:,.0f} |", flush=True)
        print(f"<!-- {json.dumps(res)} -->", flush=True)


if __name__ == "__main__":
    main()
