"""Loss recovered against zero ablation (SAEBench) and against mean ablation, for reconstructions
of known quality, on a built real set.

Reconstructions (duck-typed SAEs in the set's normalized space): PCA onto the top r principal
components of 16,384 training rows, centred on the training split's mean, for several r; the constant training mean
(what mean ablation puts in: scores 0 against it by construction); and the identity. Prints the
clean / zero-ablation / mean-ablation CE of the held-out contexts and each reconstruction's
explained variance on the eval rows and both loss-recovered scores.

    python scripts/loss-recovered-references.py smollm2-135m-resid12 [--n-contexts 16]

Needs the default model and the built set (``saebench activations build NAME``); ~10 s per row
on one core.
"""

from __future__ import annotations

import argparse

import torch

from saebench_sanity.metrics.base import MetricCache, MetricContext
from saebench_sanity.metrics.loss_recovered import loss_recovered_scores
from saebench_sanity.registry import get_registry


class _Affine:
    """``decode(encode(x)) = (x - mean) @ basis @ basis.T + mean`` (rows of ``basis.T`` orthonormal)."""

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor) -> None:
        self.mean, self.basis = mean, basis

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.basis

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.basis.T + self.mean


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--n-contexts", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = get_registry().get("activation_set", args.name).build()
    train = s.sample_activations(16384, seed=0).double()
    # centre on the mean that mean ablation uses (the whole training split's, from the store;
    # a sample's mean differs: a few massive-norm tokens dominate it), in normalized space
    mean = s.normalizer.apply(s.resource("model").mean_activation.double())
    _, vecs = torch.linalg.eigh(torch.cov(train.T))
    vecs = vecs.flip(1)  # descending eigenvalues
    ev_rows = s.eval_activations().double()
    d = ev_rows.shape[1]
    cases = [("constant training mean", _Affine(mean, vecs[:, :0]))]
    cases += [(f"PCA top {r} of {d}", _Affine(mean, vecs[:, :r])) for r in (8, 32, 128, 384)]
    cases += [("identity", _Affine(mean, vecs))]
    print(f"{args.name}: {args.n_contexts} held-out contexts")
    cache = MetricCache()  # the set's reference runs, computed once for every case
    for label, sae in cases:
        sae32 = _Affine(sae.mean.float(), sae.basis.float())
        recon = sae.decode(sae.encode(ev_rows))
        ev = 1 - float(((ev_rows - recon) ** 2).sum() / ((ev_rows - ev_rows.mean(0)) ** 2).sum())
        out = loss_recovered_scores(MetricContext(sae32, s, eval_acts=ev_rows.float(), cache=cache),
                                    n_contexts=args.n_contexts)
        if label == cases[0][0]:
            print(f"CE clean {out['ce_clean']:.3f}, zero ablation {out['ce_zero']:.3f}, "
                  f"mean ablation {out['ce_mean_ablation']:.3f} nats")
        print(f"{label}: EV {ev:.3f}, CE {out['ce_sae']:.3f}, loss_recovered (zero) {out['loss_recovered']:.3f}, "
              f"loss_recovered_mean_ablation {out['loss_recovered_mean_ablation']:.3f}, "
              f"kl_div_score (zero) {out['kl_div_score']:.3f}, mean {out['kl_div_score_mean_ablation']:.3f}")


if __name__ == "__main__":
    main()
