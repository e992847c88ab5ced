"""Sparse building blocks shared by the batched TopK family (``topk``) and penalty family (``l1``).

A cohort's activations ``[M, B, d_sae]`` are read as one block-diagonal matrix ``[M * B, M * d_sae]``
(row ``m * B + b``, column ``m * d_sae + j``): member m's block holds its batch x latents, so one
CSR product computes every member's product at once and members never mix. A *pattern* is the set
of entries a step keeps (TopK: the k selected per sample; ReLU-like: the active ones) and provides

* ``cols`` ``[N]`` long: the column (global latent) of each entry, entries grouped by row ascending;
* ``crow()`` ``[M * B + 1]``: the CSR row pointer of that grouping;
* ``by_row_pattern(like)``: CSR ``[M * B, M * d_sae]`` of the entries (zero values) for ``sampled_addmm``;
* ``by_latent(values)``: CSR ``[M * d_sae, M * B]`` (the transpose) with ``values [N]`` at each entry.

``topk._Sel`` (fixed count per row) and ``Entries`` (any count per row, found from a mask) are the
two patterns. ``SelectedPre`` and ``SparseDecode`` are the autograd functions built on them: the
encoder's output at the entries and the decoder's input from the entries, each with a backward that
touches the entries only.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from saebench_sanity.training.batched.base import accelerator_paths

# torch warns once per process that CSR tensors are "beta"; we use them only as the index pattern
# of sampled_addmm and sparse x dense products (checked against sae-lens's dense gradients in
# tests/), so the warning is noise in every worker's log. Narrow filter: this message only.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def csr_mm(A: Tensor, dense: Tensor, acc: Tensor | None = None) -> Tensor:
    """``A @ dense`` ``[rows, d]`` for a CSR ``A`` and a row-major ``dense``; with ``acc`` (a
    row-major ``[rows, d]``), ``acc += A @ dense`` in place, returned.

    On CPU, ``torch.addmm(out, A, dense, beta=0, out=out)`` into a fresh row-major ``out`` writes
    the product in place (MKL's sparse kernel; ``beta = 0`` ignores ``out``'s contents). It was ~2x
    faster than torch's native ``torch.sparse.mm(A, dense, "sum")`` (which zero-fills its result
    first) and 2-3x faster than ``A @ dense`` (which also copies a column-major result), with the
    same values in float32 and float64 (one-off measurements at one thread, products of 576 x 1152
    and 768 x 16384 SAE steps). Without MKL, torch's own kernel runs on a zeroed ``out``."""
    if accelerator_paths(A.device):
        return A @ dense if acc is None else acc.add_(A @ dense)
    if acc is not None:
        return torch.addmm(acc, A, dense.contiguous(), out=acc)
    out_shape = (A.shape[0], dense.shape[1])
    out = dense.new_empty(out_shape) if torch.backends.mkl.is_available() else dense.new_zeros(out_shape)
    return torch.addmm(out, A, dense.contiguous(), beta=0.0, out=out)


class SelectedPre(torch.autograd.Function):
    """Pre-activations at the entries of a pattern ``[N]`` with a sparse backward.

    ``pre[b, j] = (x - a * b_dec)[b] @ W_enc[:, j] + b_enc[j]`` per member. Inputs: ``values [N]``
    (the dense forward's values there, detached), ``sae_in [R, d_in]`` (``R = M * B`` rows, detached),
    ``W_enc [M, d_in, d_sae]``, ``b_enc [M, d_sae]``, ``b_dec [M, d_in]``, ``a [M]`` (the
    ``apply_b_dec_to_input`` flags), ``sel`` (the pattern). The input gradient is never formed:
    ``d pre / d b_dec = -a * W_enc^T``, so ``b_dec`` gets ``-a * W_enc @ (b_enc's gradient)`` (also
    when ``b_enc`` itself takes no gradient: pass a constant zero bias for a bias-free product)."""

    @staticmethod
    def forward(ctx, values, sae_in, W_enc, b_enc, b_dec, a, sel):  # type: ignore[override]
        ctx.save_for_backward(sae_in, W_enc, a)
        ctx.sel = sel
        return values.clone()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        sae_in, W_enc, a = ctx.saved_tensors
        sel: Any = ctx.sel
        M, d_in, d_sae = W_enc.shape
        g_W = g_b = g_bdec = None
        gb = torch.zeros(M * d_sae, dtype=g.dtype, device=g.device).index_add_(0, sel.cols, g).view(M, d_sae)
        if ctx.needs_input_grad[3]:
            g_b = gb
        if ctx.needs_input_grad[4]:
            # [M, 1, d_sae] @ [M, d_sae, d_in]: reads W_enc in its stored (latent-major) layout
            g_bdec = -a.to(g.dtype).unsqueeze(1) * torch.bmm(gb.unsqueeze(1), W_enc.transpose(1, 2)).squeeze(1)
        if ctx.needs_input_grad[2]:
            g_W = csr_mm(sel.by_latent(g), sae_in).view(M, d_sae, d_in).transpose(1, 2)  # view of the stored layout
        return None, None, g_W, g_b, g_bdec, None, None


class SparseDecode(torch.autograd.Function):
    """``out[r] = sum_{entries e of row r} w[e] * W_dec[cols[e]]`` ``[R, d_in]`` (no bias), for
    the entries of ``sel`` (grouped by row, distinct); ``W_dec [L, d_in]``, ``L = M * d_sae``."""

    @staticmethod
    def forward(ctx, w, W_dec, sel):  # type: ignore[override]
        ctx.save_for_backward(w, W_dec)
        ctx.sel = sel
        return torch.nn.functional.embedding_bag(sel.cols, W_dec, sel.crow()[:-1], mode="sum", per_sample_weights=w)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        w, W_dec = ctx.saved_tensors
        sel: Any = ctx.sel
        g_w = g_W = None
        g = g.contiguous()
        if ctx.needs_input_grad[0]:
            # d out / d w[e] = W_dec[cols[e]] . g[rows[e]]: computed only at the kept entries
            g_w = torch.sparse.sampled_addmm(sel.by_row_pattern(w), g, W_dec.T, beta=0.0).values()
        if ctx.needs_input_grad[1]:
            g_W = csr_mm(sel.by_latent(w), g)
        return g_w, g_W, None


class LatentMajor:
    """``by_latent`` for a set of entries with ``rows`` (``m * B + b``) and ``cols`` (``m * d_sae + j``),
    ``[N]`` long each, and ``M``, ``B``, ``d_sae``; the sort is cached in ``_by_latent`` (set it
    to None in ``__init__``). Shared by the TopK family's selection and the L1 family's entries."""

    M: int
    B: int
    d_sae: int
    rows: Tensor
    cols: Tensor
    _by_latent: "tuple[Tensor, Tensor, Tensor] | None"

    def by_latent(self, values: Tensor) -> Tensor:
        """CSR ``[M * d_sae, M * B]`` with ``values [N]`` at (latent, row) of each entry (rows
        ascending within a latent: a stable sort of the columns)."""
        M, B, d_sae = self.M, self.B, self.d_sae
        if self._by_latent is None:
            # int32 keys sort ~2x faster than int64 on CPU (one-off measurement, 32k entries)
            keys = self.cols.to(torch.int32) if M * d_sae < 2 ** 31 else self.cols
            order = torch.argsort(keys, stable=True)
            crow = torch.zeros(M * d_sae + 1, dtype=torch.long, device=self.cols.device)
            crow[1:] = torch.bincount(self.cols, minlength=M * d_sae).cumsum(0)
            self._by_latent = (order, crow, self.rows.index_select(0, order))
        order, crow, col = self._by_latent
        return torch.sparse_csr_tensor(crow, col, values.index_select(0, order), (M * d_sae, M * B),
                                       check_invariants=False)


class Entries(LatentMajor):
    """The nonzero entries of a mask ``[M, B, d_sae]``, any number per row, as a pattern (module
    docstring). Entries are in the mask's row-major order: grouped by row ``m * B + b``, latents
    ascending within a row (so sums over a row's entries run in latent order, as a dense row's do).

    Attributes:
        flat: ``[N]`` long, index of each entry in the flattened ``[M, B, d_sae]`` tensor.
        rows: ``[N]`` long, ``m * B + b``.
        cols: ``[N]`` long, ``m * d_sae + j``.
    """

    def __init__(self, mask: Tensor) -> None:
        M, B, d_sae = mask.shape
        self.M, self.B, self.d_sae = M, B, d_sae
        self.flat = mask.reshape(-1).nonzero().squeeze(1)
        self.rows = torch.div(self.flat, d_sae, rounding_mode="floor")
        self.cols = torch.div(self.rows, B, rounding_mode="floor") * d_sae + (self.flat - self.rows * d_sae)
        self._crow: Tensor | None = None
        self._by_latent: tuple[Tensor, Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return int(self.flat.numel())

    def take(self, t: Tensor) -> Tensor:
        """``t [M, B, d_sae]`` at the entries ``[N]`` (no grad bookkeeping beyond ``take``'s)."""
        return t.reshape(-1).take(self.flat)

    def per_latent(self, t: Tensor) -> Tensor:
        """``t [M, d_sae]`` (a per-latent quantity of each member) at the entries ``[N]``; differentiable
        (its gradient adds up over the entries of each latent)."""
        return t.reshape(-1).index_select(0, self.cols)

    def per_member(self, t: Tensor) -> Tensor:
        """``t [M]`` (a per-member number) at the entries ``[N]``."""
        return t.index_select(0, torch.div(self.rows, self.B, rounding_mode="floor"))

    def row_sum(self, values: Tensor) -> Tensor:
        """Sum of ``values [N]`` over each row's entries: ``[M, B]`` (differentiable)."""
        out = torch.zeros(self.M * self.B, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.rows, values).view(self.M, self.B)

    def latent_count(self, values: Tensor) -> Tensor:
        """Number of entries of each latent where ``values != 0``: ``[M, d_sae]`` in ``values``' dtype."""
        w = (values != 0).to(values.dtype)
        return torch.zeros(self.M * self.d_sae, dtype=values.dtype, device=values.device).index_add_(
            0, self.cols, w).view(self.M, self.d_sae)

    def crow(self) -> Tensor:
        """CSR row pointer ``[M * B + 1]``."""
        if self._crow is None:
            R = self.M * self.B
            crow = torch.zeros(R + 1, dtype=torch.long, device=self.flat.device)
            crow[1:] = torch.bincount(self.rows, minlength=R).cumsum(0)
            self._crow = crow
        return self._crow

    def by_row_pattern(self, like: Tensor) -> Tensor:
        """CSR ``[M * B, M * d_sae]`` of the entries, values zero (``like``'s dtype), for ``sampled_addmm``."""
        return torch.sparse_csr_tensor(self.crow(), self.cols, torch.zeros_like(like),
                                       (self.M * self.B, self.M * self.d_sae), check_invariants=False)

