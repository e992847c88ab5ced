"""The training-free baseline references (saebench_sanity/analysis/ceilings.py) on closed-form
cases and against an independent least-squares computation."""

import torch

from saebench_sanity.analysis.ceilings import (frozen_decoder_omp, frozen_decoder_projection,
                                               frozen_encoder_ls, main)
from saebench_sanity.metrics.reconstruction import explained_variance


def _sparse_data(n=600, d=16, n_atoms=32, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_atoms, d, generator=g, dtype=torch.float64)
    D = D / D.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(n_atoms, generator=g)[:k] for _ in range(n)])
    codes = torch.zeros(n, n_atoms, dtype=torch.float64).scatter_(1, idx, torch.rand(n, k, generator=g, dtype=torch.float64) + 0.5)
    return codes @ D, D


def test_omp_recovers_exactly_sparse_signals_in_an_orthonormal_dictionary():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    idx = torch.stack([torch.randperm(16, generator=g)[:3] for _ in range(200)])
    codes = torch.zeros(200, 16, dtype=torch.float64).scatter_(1, idx, torch.randn(200, 3, generator=g, dtype=torch.float64))
    x = torch.cat([codes, -codes]) @ Q  # mean exactly 0: centring keeps every row 3-sparse in Q
    assert frozen_decoder_omp(x, x, Q, k=3) > 1 - 1e-9
    assert frozen_decoder_omp(x, x, Q, k=2) < 0.99  # one atom short cannot be exact


def test_omp_beats_or_equals_projection_support_and_both_stay_below_one():
    x, D = _sparse_data()
    proj = frozen_decoder_projection(x, x, D, k=3)
    omp = frozen_decoder_omp(x, x, D, k=3)
    assert 0 < proj < 1 and 0 < omp < 1
    assert omp >= proj - 1e-9


def test_frozen_encoder_reference_is_the_least_squares_decoder():
    x, _ = _sparse_data(seed=2)
    g = torch.Generator().manual_seed(3)
    E = torch.randn(16, 48, generator=g, dtype=torch.float64)
    E = E / E.norm(dim=0, keepdim=True)
    mu = x.mean(0)
    pre = (x - mu) @ E
    vals, idx = pre.topk(4, dim=1)
    Z = torch.zeros_like(pre).scatter_(1, idx, vals.clamp(min=0))
    D = torch.linalg.lstsq(Z, x - mu).solution  # independent path: QR-based lstsq, not normal equations
    expected = explained_variance(x, mu + Z @ D)
    assert abs(frozen_encoder_ls(x, x, E, k=4) - expected) < 1e-6


def test_bad_expansions_exit_2_with_one_line(capsys):
    assert main(["--expansions", "two"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--expansions" in err[0]
