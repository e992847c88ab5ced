"""Training-free reference points for the random baselines of a TopK SAE on an activation set.

Why this exists: on the default real set the frozen-encoder baseline reconstructs better than
the frozen-decoder baseline, while the study found the opposite on Gemma/Pythia at larger
expansions. These closed-form references separate what each frozen side allows from what
gradient training of the other side reaches. Every number is computed in float64 on the bulk of
the tokens (samples with norm <= ``max_norm_ratio`` x the median, the ``reconstruction_bulk``
definition), fitted on training activations and scored on the set's held-out activations.

Per expansion (``d_sae = expansion x d_in``), with ``k`` active latents per token:

* ``frozen_encoder_ls``: the frozen encoder's random unit columns ``E`` (``iso``, as the
  ``frozen_encoder`` mode) pick and weight the codes, ``z = TopK(ReLU((x - mu) E))``; the decoder
  is the exact least-squares solution for those codes (``min_D ||X - mu - Z D||``). The baseline
  also trains its biases and thresholds, so it can exceed this; a decoder trained by Adam from a
  random start rarely does.
* ``frozen_decoder_projection``: the frozen decoder's unit rows ``D`` (``cov`` init, as the
  ``frozen_decoder`` mode); the support is the top-k of the tied projection ``(x - mu) D^T``
  (what the baseline's encoder starts from) and the k coefficients are refitted per token by least
  squares (signs free: above what a non-negative SAE code can do with that support).
* ``frozen_decoder_omp``: the same dictionary with the support chosen by orthogonal matching
  pursuit (greedy, least-squares refit at every step, signs free): a sparse-coding reference no
  amortised linear+TopK encoder is guaranteed to reach.

Reading them: if ``frozen_decoder_omp`` is far above ``frozen_decoder_projection``, a frozen
random dictionary holds good k-sparse codes, but finding them is the hard part, and an SAE
encoder (one linear map and a TopK) pays that selection cost; the frozen encoder's decoder has
no such problem: given its codes, the best decoder is a linear least-squares fit.

Run: ``python -m saebench_sanity.analysis.ceilings --set smollm2-135m-resid12 --expansions 2,8``
(needs the set built: ``saebench activations build``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _bulk(x: Any, max_norm_ratio: float) -> Any:
    from saebench_sanity.metrics.reconstruction import bulk_mask

    return x[bulk_mask(x, max_norm_ratio)]


def _ev(x: Any, x_hat: Any) -> float:
    from saebench_sanity.metrics.reconstruction import explained_variance

    return explained_variance(x, x_hat)


def _topk_codes(pre: Any, k: int) -> Any:
    """``[n, d_sae]`` dense codes: ReLU of the k largest pre-activations per row (sae-lens's TopK)."""
    import torch

    vals, idx = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, idx, vals.clamp(min=0))


def frozen_encoder_ls(x_fit: Any, x_eval: Any, E: Any, k: int, ridge: float = 1e-8) -> float:
    """EV on ``x_eval`` of the least-squares decoder for the TopK codes of a frozen encoder
    ``E`` ``[d_in, d_sae]``; ``ridge`` (relative to the mean diagonal) only keeps latents that
    never fire from making the normal equations singular."""
    import torch

    mu = x_fit.mean(0)
    Z = _topk_codes((x_fit - mu) @ E, k)
    G = Z.T @ Z
    G += torch.eye(G.shape[0], dtype=G.dtype) * ridge * float(G.diagonal().mean().clamp(min=1e-30))
    D = torch.linalg.solve(G, Z.T @ (x_fit - mu))
    return _ev(x_eval, mu + _topk_codes((x_eval - mu) @ E, k) @ D)


def _refit(r: Any, atoms: Any) -> tuple[Any, Any]:
    """Least squares of ``r`` ``[n, d_in]`` on per-row atoms ``[n, s, d_in]``: coefficients
    ``[n, s]`` and the fit ``[n, d_in]``."""
    import torch

    coef = torch.linalg.lstsq(atoms.transpose(1, 2), r.unsqueeze(-1)).solution.squeeze(-1)
    return coef, torch.einsum("ns,nsd->nd", coef, atoms)


def frozen_decoder_projection(x_fit: Any, x_eval: Any, D: Any, k: int, chunk: int = 1024) -> float:
    """EV of per-token least squares on the tied projection's top-k atoms of ``D`` ``[d_sae, d_in]``."""
    import torch

    mu = x_fit.mean(0)
    out = []
    for xs in x_eval.split(chunk):
        r = xs - mu
        idx = (r @ D.T).topk(k, dim=1).indices
        out.append(mu + _refit(r, D[idx])[1])
    return _ev(x_eval, torch.cat(out))


def frozen_decoder_omp(x_fit: Any, x_eval: Any, D: Any, k: int, chunk: int = 512) -> float:
    """EV of orthogonal matching pursuit with ``k`` atoms of ``D`` ``[d_sae, d_in]`` per token
    (written here because neither torch nor sae-lens has a batched OMP; scikit-learn's is per
    sample and not a dependency)."""
    import torch

    mu = x_fit.mean(0)
    out = []
    for xs in x_eval.split(chunk):
        r0 = xs - mu
        resid = r0.clone()
        chosen = torch.zeros(xs.shape[0], 0, dtype=torch.long)
        fit = torch.zeros_like(r0)
        for _ in range(k):
            score = (resid @ D.T).abs()
            score.scatter_(1, chosen, -1.0)  # never pick an atom twice
            chosen = torch.cat([chosen, score.argmax(1, keepdim=True)], dim=1)
            fit = _refit(r0, D[chosen])[1]
            resid = r0 - fit
        out.append(mu + fit)
    return _ev(x_eval, torch.cat(out))


def ceilings(activation_set: Any, expansions: list[int], k: int, n_fit: int = 16384, n_eval: int = 4096,
             max_norm_ratio: float = 10.0, seed: int = 0, omp: bool = True) -> list[dict[str, Any]]:
    """One row per expansion: the three references above (EV on the bulk of held-out tokens)."""
    import torch

    from saebench_sanity.training.modes import random_directions

    x_fit = _bulk(activation_set.sample_activations(n_fit, seed=seed).to(torch.float64), max_norm_ratio)
    x_eval = _bulk(activation_set.eval_activations()[:n_eval].to(torch.float64), max_norm_ratio)
    d_in = x_fit.shape[1]
    rows = []
    for e in expansions:
        torch.manual_seed(seed)
        E = random_directions(e * d_in, d_in, "iso").to(torch.float64).T
        D = random_directions(e * d_in, d_in, "cov", x_fit).to(torch.float64)
        row = {"expansion": e, "d_sae": e * d_in, "k": k, "n_fit": int(x_fit.shape[0]), "n_eval": int(x_eval.shape[0]),
               "frozen_encoder_ls": frozen_encoder_ls(x_fit, x_eval, E, k),
               "frozen_decoder_projection": frozen_decoder_projection(x_fit, x_eval, D, k)}
        if omp:
            row["frozen_decoder_omp"] = frozen_decoder_omp(x_fit, x_eval, D, k)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m saebench_sanity.analysis.ceilings", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="smollm2-135m-resid12", help="a registered activation set")
    p.add_argument("--expansions", default="2,8", help="comma-separated d_sae / d_in ratios")
    p.add_argument("--k", type=int, default=32, help="active latents per token (the suite's target L0)")
    p.add_argument("--n-fit", type=int, default=16384)
    p.add_argument("--n-eval", type=int, default=4096)
    p.add_argument("--no-omp", action="store_true", help="skip the (slowest) OMP reference")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    try:
        expansions = [int(v) for v in args.expansions.split(",")]
        if not expansions or min(expansions) < 1 or args.k < 1:
            raise ValueError
    except ValueError:
        print(f"error: --expansions {args.expansions!r} / --k {args.k}: use positive integers, e.g. --expansions 2,8 --k 32",
              file=sys.stderr)
        return 2
    import torch

    from saebench_sanity.errors import SaebenchError
    from saebench_sanity.registry import get_registry

    torch.set_num_threads(1)
    try:
        aset = get_registry().get("activation_set", args.set).build()
        rows = ceilings(aset, expansions, args.k, args.n_fit, args.n_eval, omp=not args.no_omp)
    except SaebenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    from tabulate import tabulate

    print(tabulate([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                   headers="keys", tablefmt="github"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
