"""Harvest-time massive-activation flags against ``reconstruction_bulk``'s own outlier mask, on a built set.

    python scripts/massive-flags.py smollm2-135m-resid12 [--ratio 10]

Applies the rule a build with ``massive_norm_ratio = R`` stores (``activations.store.massive_flags``:
a row is massive when its L2 norm, in float64, of the row as stored, exceeds R x the median norm
of the held-out rows) to the set's stored rows, and compares it on the held-out rows with the mask
the ``reconstruction_bulk`` metric computes from the activations the set serves (normalized, in
float32: ``metrics.reconstruction.bulk_mask``). Prints the counts, whether the two masks are
identical, and how close any row comes to the threshold (the margin within which float rounding
could flip a row). Works on any built set, with or without stored flags; reads shards one at a time.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("name", help="a built real set, e.g. smollm2-135m-resid12")
    ap.add_argument("--ratio", type=float, default=10.0, help="R, the multiple of the median norm (default 10)")
    args = ap.parse_args()

    import torch

    from saebench_sanity.activations.store import massive_flags
    from saebench_sanity.metrics.reconstruction import bulk_mask
    from saebench_sanity.registry import get_registry

    torch.set_num_threads(1)
    aset = get_registry().get("activation_set", args.name).build()
    reader = aset.reader
    stored_eval = reader.eval_activations(normalize=False)  # the rows as stored, in float32
    flags, median = massive_flags(stored_eval, args.ratio)
    served = aset.eval_activations()  # what metrics see (normalized when the set serves it so)
    metric_keep = bulk_mask(served, args.ratio)
    ratios = stored_eval.to(torch.float64).norm(dim=-1) / median
    n_train = n_train_flagged = 0
    for entry in reader.manifest["shards"]:
        rows = reader.load_shard(entry)["activations"]
        n_train += rows.shape[0]
        n_train_flagged += int(massive_flags(rows, args.ratio, median)[0].sum())
    stored = reader.eval_massive()
    print(f"set {args.name}: ratio {args.ratio:g}, held-out median norm {median:.4g} (as stored)")
    print(f"held-out rows: {stored_eval.shape[0]:,}, flagged by the harvest rule: {int(flags.sum())}, "
          f"left out by reconstruction_bulk's mask: {int((~metric_keep).sum())}, "
          f"identical masks: {bool(torch.equal(~flags, metric_keep))}")
    print(f"closest row to the threshold: norm / median = {float(ratios[(ratios - args.ratio).abs().argmin()]):.4f} "
          f"(largest {float(ratios.max()):.1f})")
    print(f"training rows: {n_train:,}, flagged (same median): {n_train_flagged}")
    if stored is not None:
        print(f"flags stored at harvest (ratio {reader.massive_norm_ratio:g}): {int(stored.sum())} held-out rows, "
              f"equal to the rule here: {bool(torch.equal(stored, flags))}")
    else:
        print("this store holds no flags (built without massive_norm_ratio)")


if __name__ == "__main__":
    main()
