"""Batched training math of sae-lens's penalty-based SAEs over a cohort of M members:
``StandardTrainingSAE`` (ReLU + decoder-norm-weighted Lp penalty), ``JumpReLUTrainingSAE``
(learned thresholds, straight-through L0 / tanh / quadratic-target penalty, optional pre-act loss)
and ``GatedTrainingSAE`` (gate and magnitude paths, L1 on the gate, auxiliary gate reconstruction).

Each ``loss`` is its class's ``training_forward_pass`` over stacked parameters ``[M, ...]``,
per-member numbers ``[M]`` and activations ``[M, B, d_sae]``, the batch ``x [B, d_in]`` shared
(``torch.matmul`` on ``[M, ...]`` runs, per member, the same GEMM as sae-lens's 2-D ``@``). The
losses are sae-lens's operations in sae-lens's order; in float64 each member's loss and gradients
equal its solo sae-lens step to rounding (tests/test_batched_l1.py). JumpReLU's straight-through
gradients are sae-lens's ``JumpReLU`` / ``Step`` formulas: its own functions on the sparse step,
the same formulas on the stacked layout on the dense one (``_JumpReLUStep``). Some backward passes are written by hand to save work
(same gradients, sums in another order): ``b_dec``'s gradient through the encoder as a
vector-matrix product instead of a GEMM (``_CenteredMatmul``), the decoder row norms
(``_RowNorm``), ReLU with its L1 penalty and the decode (``_ReluL1Decode``), the decodes with the
row norms (``_DenseDecode``; ``_DecodeAt`` on the sparse step), each forming ``W_dec``'s gradient
as one tensor.

Each step is dense or sparse (``_PenaltyBatched``): once few latents fire, everything after the
encoder's GEMM runs over the entries that can carry a gradient only (tests/test_batched_l1_sparse.py).

Config that must be the same for the whole cohort (it changes the program, not a number):
``lp_norm`` (Standard), ``jumprelu_sparsity_loss_mode``, ``jumprelu_bandwidth``,
``jumprelu_ste_to_input`` and whether ``pre_act_loss_coefficient`` is set (JumpReLU). ``group_key``
keeps members that differ in them apart (the engine runs one program per key) and ``init_state``
binds them to the instance (one instance per cohort). Per-member numbers ride in the state:
``apply_b_dec_to_input``, ``target_l0``, ``jumprelu_tanh_scale``, ``pre_act_loss_coefficient``; the
sparsity coefficients come per member from ``StepCtx``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from saebench_sanity.errors import ConfigError
from saebench_sanity.training.batched.base import BatchedOut, StepCtx, accelerator_paths, copy_params_into
from saebench_sanity.training.batched.sparse import Entries, SelectedPre, csr_mm

_SUPPORTED_DTYPES = ("float32", "float64", "float16", "bfloat16")


def _stock(sae: Any) -> bool:
    """True if ``sae`` runs sae-lens's plain training path: no activation normalisation or hook_z
    reshaping, no user hooks on its hook points (they could edit activations mid-pass), sae-lens's
    own MSE."""
    from sae_lens.saes.sae import mse_loss

    cfg = sae.cfg
    if getattr(cfg, "normalize_activations", "none") != "none":
        return False
    if getattr(cfg, "reshape_activations", "none") != "none":
        return False
    if str(getattr(cfg, "dtype", "")) not in _SUPPORTED_DTYPES:
        return False
    if getattr(sae, "mse_loss_fn", None) is not mse_loss:
        return False
    for hp in getattr(sae, "hook_dict", {}).values():
        if hp._forward_hooks or hp._forward_pre_hooks or hp._backward_hooks:
            return False
    return True


def _same(saes: list[Any], field: str, arch: str) -> Any:
    """The value of ``cfg.<field>`` shared by every member; ConfigError if members differ."""
    values = [getattr(s.cfg, field) for s in saes]
    if any(v != values[0] for v in values[1:]):
        raise ConfigError(f"batched {arch}: cohort members differ in {field} ({values}); members of one cohort "
                          "must share it (train them in separate cohorts or on the solo path)")
    return values[0]


def _structural_value(sae: Any, field: str) -> Any:
    value = getattr(sae.cfg, field)
    # only whether the pre-act loss is on changes the program; its coefficient is per member
    return value is None if field == "pre_act_loss_coefficient" else value


def _per_member(saes: list[Any], values: list[float]) -> Tensor:
    """``[M]`` float64 tensor of per-member numbers on the saes' device (cast to the compute
    dtype at use, as sae-lens's Python-float arithmetic does)."""
    return torch.tensor(values, dtype=torch.float64, device=saes[0].W_enc.device)


def _col(t: Tensor, like: Tensor) -> Tensor:
    """Per-member number ``[*lead]`` -> ``[*lead, 1]`` in ``like``'s dtype (broadcasts over the batch)."""
    return t.to(like.dtype).unsqueeze(-1)


def _row(t: Tensor) -> Tensor:
    """Per-member vector ``[*lead, d]`` -> ``[*lead, 1, d]`` (broadcasts over the batch)."""
    return t.unsqueeze(-2)


class _CenteredMatmul(torch.autograd.Function):
    """``sae_in @ W`` ``[*lead, B, n]`` for ``sae_in = x - b_row`` (computed by the caller, no
    grad: ``x`` ``[B, k]`` is a constant batch), ``b_row`` ``[*lead, 1, k]``, ``W`` ``[*lead, k, n]``:
    the values of sae-lens's ``sae_in @ W`` bit for bit.

    Written by hand because autograd would form the gradient wrt ``sae_in`` (a ``[B, k] x [k, n]``
    GEMM, a sixth of a ReLU step's GEMM work) only to sum it over the batch for ``b_dec``; here
    ``b_row``'s gradient is ``-(sum_b g) @ W^T``, a vector-matrix product (equal to rounding).
    ``W``'s gradient comes out in ``W``'s own layout (the engine stores ``W_enc`` latent-major,
    ``transposed``): a transposing copy of it would cost a fifth of a GEMM.
    """

    @staticmethod
    def forward(ctx: Any, sae_in: Tensor, b_row: Tensor, W: Tensor) -> Tensor:
        ctx.save_for_backward(sae_in, W)
        return sae_in @ W

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor | None, Tensor | None]:  # type: ignore[override]
        sae_in, W = ctx.saved_tensors
        g_b = -(g.sum(dim=-2, keepdim=True) @ W.mT) if ctx.needs_input_grad[1] else None
        g_W = None
        if ctx.needs_input_grad[2]:
            g_W = (g.mT @ sae_in).mT if W.mT.is_contiguous() else sae_in.mT @ g
        return None, g_b, g_W


class _RowNorm(torch.autograd.Function):
    """``W.norm(dim=-1)`` ``[*lead, n]`` of ``W`` ``[*lead, n, k]`` (sae-lens's ``W_dec.norm(dim=1)``).

    Written by hand for the backward: torch's makes three passes over ``W`` (``W / norm``, times the
    gradient, a zero-norm mask); here one, ``W * (g / norm)`` with the ratio formed on the small
    ``[*lead, n]`` side (equal to rounding; a zero row gets zero gradient, as in torch)."""

    @staticmethod
    def forward(ctx: Any, W: Tensor) -> Tensor:
        n = W.norm(dim=-1)
        ctx.save_for_backward(W, n)
        return n

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:  # type: ignore[override]
        W, n = ctx.saved_tensors
        scale = torch.where(n > 0, g / n, torch.zeros_like(n))
        return W * scale.unsqueeze(-1)


class _ReluL1Decode(torch.autograd.Function):
    """``(f, s, f @ W)`` for ``f = relu(h)``: the ReLU activations ``[*lead, B, d]`` (no gradient
    flows through this output), their decoder-norm-weighted L1 norm per sample ``s = sum_j f_bj
    |W_j|`` ``[*lead, B]`` (sae-lens's ``(f * n).norm(p=1, dim=-1)`` for ``f, n >= 0``, as one
    matrix-vector product) and their decode ``[*lead, B, k]`` (no bias); ``h`` ``[*lead, B, d]``,
    ``W`` (``W_dec``) ``[*lead, d, k]``.

    Written by hand to save passes: torch would form ``f * n``, its norm, ``sgn`` and two products
    in the backward, and build ``W``'s gradient as two ``[*lead, d, k]`` tensors (the decode's and
    the norms') that it then adds; here the norms' term is added in place. The gradient is torch's
    (``sgn(0) = 0`` and the ReLU mask agree: both zero where ``h <= 0``); sums run in another order
    (equal to rounding)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, W: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = W.norm(dim=-1)
        f = torch.relu(h)
        ctx.save_for_backward(f, n, W)
        ctx.mark_non_differentiable(f)
        ctx.set_materialize_grads(False)
        return f, (f @ n.unsqueeze(-1)).squeeze(-1), f @ W

    @staticmethod
    def backward(ctx: Any, _g_f: Tensor | None, g_s: Tensor | None,  # type: ignore[override]
                 g_out: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        f, n, W = ctx.saved_tensors
        g = g_out @ W.mT if g_out is not None else torch.zeros_like(f)  # d / d f
        g_n = None
        if g_s is not None:
            g_n = (g_s.unsqueeze(-2) @ f).squeeze(-2)
            g.addcmul_(g_s.unsqueeze(-1), n.unsqueeze(-2))
        g_h = torch.ops.aten.threshold_backward(g, f, 0) if ctx.needs_input_grad[0] else None
        g_W = None
        if ctx.needs_input_grad[1]:
            g_W = f.mT @ g_out if g_out is not None else torch.zeros_like(W)
            if g_n is not None:
                g_W.addcmul_(W, _norm_scale(g_n, n).unsqueeze(-1))
        return g_h, g_W


class _JumpReLUStep(torch.autograd.Function):
    """sae-lens's ``JumpReLU`` and (optionally) the row sums of its ``Step`` on the stacked layout:
    ``(f, l0, fired)`` with ``f = h * (h > t_enc)`` ``[*lead, B, d]``, ``l0 = sum_j (h > t_aux)``
    ``[*lead, B]`` (None without ``t_aux``) and ``fired`` ``[*lead, d]`` (samples where ``f != 0``;
    no gradient); ``h`` ``[*lead, B, d]``, thresholds ``[*lead, d]`` (>= 0, as sae-lens clamps them).

    The straight-through gradients are sae-lens's formulas, term for term and in its order
    (``(t / bw) * rectangle((h - t) / bw) * g`` for ``JumpReLU``, ``(1 / bw) * rectangle(...) * g``
    for ``Step``, each summed over the batch for its own threshold input). Written by hand because
    sae-lens's functions sum over dim 0 and so need a ``[B, *lead, d]`` view: a dozen strided
    passes over it cost a fifth of a dense JumpReLU step; here the passes are contiguous and the
    window is computed once for both estimators."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, t_enc: Tensor, t_aux: Tensor | None, bandwidth: float,
                ste_to_input: bool) -> tuple[Tensor, Tensor | None, Tensor]:
        active = h > t_enc.unsqueeze(-2)
        f = (h * active).to(h)
        l0 = None
        if t_aux is not None:
            on = active if torch.equal(t_aux, t_enc) else h > t_aux.unsqueeze(-2)
            l0 = _count(on, -1).to(h.dtype)  # a count: exact in any float type
        fired = _count(active, -2).to(h.dtype)  # h > t >= 0, so f != 0 exactly where active
        ctx.save_for_backward(h, t_enc, t_aux if t_aux is not None else t_enc, active)
        ctx.bandwidth, ctx.ste_to_input, ctx.has_aux = bandwidth, ste_to_input, t_aux is not None
        ctx.mark_non_differentiable(fired)
        ctx.set_materialize_grads(False)
        return f, l0, fired

    @staticmethod
    def backward(ctx: Any, g_f: Tensor | None, g_l0: Tensor | None, _g_fired: Tensor | None  # type: ignore[override]
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        h, t_enc, t_aux, active = ctx.saved_tensors
        bw = ctx.bandwidth
        u = (h - t_enc.unsqueeze(-2)) / bw
        rect = ((u > -0.5) & (u < 0.5)).to(h)  # sae-lens's rectangle
        g_h = g_te = g_ta = None
        if g_f is not None:
            ste = (t_enc.unsqueeze(-2) / bw) * rect * g_f
            g_te = -torch.sum(ste, dim=-2)  # sae-lens's sum(-ste): negation is exact
            g_h = active * g_f
            if ctx.ste_to_input:
                g_h = g_h + ste
        if g_l0 is not None and ctx.has_aux:
            if not torch.equal(t_aux, t_enc):
                u = (h - t_aux.unsqueeze(-2)) / bw
                rect = ((u > -0.5) & (u < 0.5)).to(h)
            ste = (1.0 / bw) * rect * g_l0.unsqueeze(-1)
            g_ta = -torch.sum(ste, dim=-2)
            if ctx.ste_to_input:
                g_h = ste if g_h is None else g_h + ste
        return g_h, g_te, g_ta, None, None


def _count(mask: Tensor, dim: int) -> Tensor:
    """Number of True entries of ``mask`` along ``dim`` (int32; summing the bytes is ~1.7x faster
    than summing bools on CPU, one-off measurement on ``[4, 256, 1152]``)."""
    return mask.view(torch.uint8).sum(dim=dim, dtype=torch.int32)


def _norm_scale(g_n: Tensor, n: Tensor) -> Tensor:
    """``g_n / n`` where ``n > 0``, else 0: the row norms' gradient is ``W * this`` (as torch's)."""
    return torch.where(n > 0, g_n / n, torch.zeros_like(n))


class _DenseDecode(torch.autograd.Function):
    """``(n, f_1 @ W, f_2 @ W, ...)``: the row norms ``W.norm(dim=-1)`` ``[*lead, d]`` and the
    decodes ``[*lead, B, k]`` (no bias) of activations ``f_i`` ``[*lead, B, d]``; ``W`` ``[*lead, d,
    k]``. Written by hand so ``W``'s gradient is one tensor, the other terms added in place
    (autograd would add two or three ``[*lead, d, k]`` tensors); equal to rounding."""

    @staticmethod
    def forward(ctx: Any, W: Tensor, *fs: Tensor) -> tuple[Tensor, ...]:
        n = W.norm(dim=-1)
        ctx.save_for_backward(W, n, *fs)
        ctx.set_materialize_grads(False)
        return (n, *(f @ W for f in fs))

    @staticmethod
    def backward(ctx: Any, g_n: Tensor | None, *g_outs: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        W, n, *fs = ctx.saved_tensors
        g_fs = [g @ W.mT if g is not None and ctx.needs_input_grad[1 + i] else None for i, g in enumerate(g_outs)]
        g_W = None
        if ctx.needs_input_grad[0]:
            for f, g in zip(fs, g_outs):
                if g is None:
                    continue
                if g_W is None:
                    g_W = f.mT @ g
                elif g_W.dim() == 3:
                    g_W.baddbmm_(f.mT, g)
                else:
                    g_W.addmm_(f.mT, g)
            if g_W is None:
                g_W = torch.zeros_like(W)
            if g_n is not None:
                g_W.addcmul_(W, _norm_scale(g_n, n).unsqueeze(-1))
        return (g_W, *g_fs)


def sparse_capable(dtype: torch.dtype, device: torch.device) -> bool:
    """The sparse step's kernels are there and pay: CPU, float32 / float64. On a GPU, finding the
    entries (``nonzero``) reads the device every step, and the dense GEMMs are cheap there."""
    return not accelerator_paths(device) and dtype in (torch.float32, torch.float64)


class _DecodeAt(torch.autograd.Function):
    """Sparse decodes ``w @ W_dec`` ``[M, B, d_in]`` (no bias) of one or more activation vectors
    ``w`` ``[N]`` at the entries of ``ent`` and, if ``norm``, the row norms ``W_dec.norm(dim=-1)``
    ``[M, d_sae]`` first; ``W_dec`` ``[M, d_sae, d_in]``.

    One function for what would be ``SparseDecode`` per vector plus ``_RowNorm``: the decoder's
    gradient is formed once (the sparse products, then the norms' term added in place) instead of
    as two or three ``[M, d_sae, d_in]`` tensors that autograd then adds up (equal to rounding)."""

    @staticmethod
    def forward(ctx: Any, W_dec: Tensor, ent: Entries, norm: bool, *ws: Tensor) -> Any:
        M, d_sae, d_in = W_dec.shape
        flat = W_dec.reshape(M * d_sae, d_in)
        offsets = ent.crow()[:-1]
        outs = [torch.nn.functional.embedding_bag(ent.cols, flat, offsets, mode="sum", per_sample_weights=w)
                .view(M, -1, d_in) for w in ws]
        ctx.ent, ctx.norm = ent, norm
        ctx.set_materialize_grads(False)
        if norm:
            n = W_dec.norm(dim=-1)
            ctx.save_for_backward(W_dec, n, *ws)
            return (n, *outs)
        ctx.save_for_backward(W_dec, *ws)
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        ent: Entries = ctx.ent
        if ctx.norm:
            W_dec, n, *ws = ctx.saved_tensors
            g_n, *g_outs = grads
        else:
            W_dec, *ws = ctx.saved_tensors
            g_n, g_outs = None, list(grads)
        M, d_sae, d_in = W_dec.shape
        flat = W_dec.reshape(M * d_sae, d_in)
        g_W: Tensor | None = None
        g_ws: list[Tensor | None] = []
        for i, (w, g) in enumerate(zip(ws, g_outs)):
            if g is None:
                g_ws.append(None)
                continue
            g = g.reshape(M * ent.B, d_in).contiguous()
            # d out / d w[e] = W_dec[cols[e]] . g[rows[e]]: computed only at the entries
            g_ws.append(torch.sparse.sampled_addmm(ent.by_row_pattern(w), g, flat.T, beta=0.0).values()
                        if ctx.needs_input_grad[3 + i] else None)
            if ctx.needs_input_grad[0]:
                g_W = csr_mm(ent.by_latent(w), g, g_W)
        if ctx.needs_input_grad[0]:
            g_W = torch.zeros_like(W_dec) if g_W is None else g_W.view(M, d_sae, d_in)
            if g_n is not None:  # _RowNorm's gradient, W * g / norm (zero rows: zero)
                g_W.addcmul_(W_dec, _norm_scale(g_n, n).unsqueeze(-1))
        return (g_W, None, None, *g_ws)


class _PenaltyBatched:
    """Shared parts of the three archs: support checks, grouping, state, write-back, the choice
    between the dense and the sparse step.

    Every step computes the encoder's dense pre-activations (one GEMM per member); what follows
    depends on the set of entries whose gradient can be nonzero (``_entries``). When that set is a
    small fraction of the batch (``sparse_max_density``: the case of every member once the matched-L0
    controller has brought it near its target), the rest of the step touches those entries only:
    decoding through ``embedding_bag``, the gradient wrt the activations only at the entries
    (``sampled_addmm``), the ``W_dec`` / ``W_enc`` gradients as sparse x dense products
    (``training.batched.sparse``). Otherwise the dense step runs. Both give the same loss and
    gradients up to the order of sums (tests/test_batched_l1_sparse.py).
    """

    param_names: tuple[str, ...] = ()
    arch = "?"
    #: the engine stores W_enc latent-major ``[M, d_sae, d_in]`` and hands ``loss`` the transposed
    #: view: the sparse step's W_enc gradient comes out in that layout (as in the TopK family).
    transposed = ("W_enc",)

    #: The sparse step runs when at most this fraction of the cohort's ``[M, B, d_sae]`` entries is
    #: in its sparse set; set per arch a little below the measured crossover, where the two steps
    #: cost the same (``benchmarks/test_bench_cohort_l1.py::test_bench_l1_density_sweep``, 576 x 1152,
    #: batch 256, 4 members, one thread: ReLU ~0.15, JumpReLU ~0.14, Gated ~0.17; docs/performance.md).
    sparse_max_density = 0.14

    def __init__(self, sparse: bool | None = None) -> None:
        #: True / False forces the sparse / dense step (tests, measurements; True needs CPU and
        #: float32 / float64); None chooses by ``sparse_capable`` and ``sparse_max_density``.
        self.sparse = sparse
        #: whether the last ``loss`` ran the sparse step (for tests and benchmarks)
        self.last_sparse = False

    def supports(self, sae: Any) -> bool:
        return _stock(sae) and all(isinstance(getattr(sae, n, None), torch.nn.Parameter) for n in self.param_names)

    #: config fields that shape the program: members of one cohort must share them (``group_key``)
    structural: tuple[str, ...] = ()

    def group_key(self, sae: Any) -> tuple:
        """Members with equal keys can share one stacked program (the engine groups by it)."""
        return (type(sae).__name__, int(sae.cfg.d_in), int(sae.cfg.d_sae),
                *(_structural_value(sae, f) for f in self.structural))

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        if not saes:
            raise ConfigError(f"batched {self.arch}: a cohort needs at least one member")
        for field in ("d_in", "d_sae"):
            _same(saes, field, self.arch)
        return {"apply_b_dec": _per_member(saes, [1.0 if s.cfg.apply_b_dec_to_input else 0.0 for s in saes])}

    def update_state(self, state: dict[str, Tensor], p: dict[str, Tensor], x: Tensor, ctx: StepCtx) -> None:
        """Nothing: these classes keep no running state (JumpReLU's threshold clamp happens in ``loss``)."""

    def write_back(self, p: dict[str, Tensor], state: dict[str, Tensor], saes: list[Any]) -> None:
        copy_params_into(p, saes, self.param_names)

    def loss(self, p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor], ctx: StepCtx) -> BatchedOut:
        """See ``base.BatchedArch.loss``: ``p[name]`` ``[M, ...]``, ``x`` ``[B, d_in]``; returns ``[M]``
        losses and ``[M, d_sae]`` fire counts."""
        self._prepare(p)
        self.last_sparse = False
        return self._member(p, x, state, ctx.coefficients, ctx.dead_neuron_mask)

    def _prepare(self, p: dict[str, Tensor]) -> None:
        """In-place, no-grad changes sae-lens makes to the parameters before its forward pass."""

    def _member(self, p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor],
                coefs: dict[str, Tensor], dead: Tensor | None) -> BatchedOut:
        """The loss over leading member dims ``lead`` (``(M,)`` here; the dense code also runs for
        one member, ``lead = ()``): ``total``/losses ``[*lead]``, fire counts ``[*lead, d_sae]``."""
        raise NotImplementedError

    def _may_be_sparse(self, pre: Tensor) -> bool:
        """False if this step is dense whatever its activations (forced, one member without a
        member dim, or a dtype / device without the sparse kernels)."""
        if self.sparse is False or pre.dim() != 3:
            return False
        return self.sparse is True or sparse_capable(pre.dtype, pre.device)

    def _entries(self, mask_of: Callable[[slice], Tensor], batch: int) -> Entries | None:
        """The sparse set of this step, or None: take the dense step. ``mask_of(rows)`` gives the
        mask ``[M, len(rows), d_sae]`` of those samples, True where an entry's gradient can be
        nonzero. Call only if ``_may_be_sparse``; runs under ``no_grad``."""
        if self.sparse is None:
            limit = self.sparse_max_density
            probe_rows = batch // 8
            if probe_rows >= 8:
                # a clearly dense batch (an eighth of it over twice the bound) skips the full mask:
                # at initialisation that saves most of the switch's cost; a wrong guess only
                # costs speed (the dense step is exact too)
                probe = mask_of(slice(0, probe_rows))
                if int(torch.count_nonzero(probe)) > 2 * limit * probe.numel():
                    return None
            mask = mask_of(slice(None))
            # one count before finding the entries: in the dense regime that costs far less
            if int(torch.count_nonzero(mask)) > limit * mask.numel():
                return None
        else:
            mask = mask_of(slice(None))
        self.last_sparse = True
        return Entries(mask)

    @staticmethod
    def _sae_in(p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """sae-lens's ``process_sae_in``: ``(sae_in, b_row)`` with ``b_row = b_dec *
        apply_b_dec_to_input`` ``[*lead, 1, d_in]`` (the config bool: exactly b_dec or 0, gradient 1
        or 0) and ``sae_in = x - b_row`` ``[*lead, B, d_in]`` (no grad; ``_CenteredMatmul`` carries it)."""
        b_dec = p["b_dec"]
        b_row = _row(b_dec * _col(state["apply_b_dec"], b_dec))
        with torch.no_grad():
            sae_in = x.to(b_dec.dtype) - b_row
        return sae_in, b_row

    @staticmethod
    def _sparse_pre(p: dict[str, Tensor], state: dict[str, Tensor], sae_in: Tensor, prod: Tensor,
                    ent: Entries, bias: Tensor | None) -> Tensor:
        """``sae_in @ W_enc (+ bias)`` at the entries ``[N]``: the values from ``prod`` ``[M, B,
        d_sae]`` (the dense forward's ``sae_in @ W_enc``, no grad) plus ``bias`` ``[M, d_sae]`` (the
        same float additions as the dense step's), with a sparse backward into ``W_enc``, ``bias``
        and ``b_dec``. ``bias`` None: the bias-free product."""
        M, B, d_in = sae_in.shape
        values = ent.take(prod)
        if bias is None:
            bias = prod.new_zeros(M, prod.shape[-1])
        else:
            values = values + ent.per_latent(bias.detach())
        return SelectedPre.apply(values, sae_in.reshape(M * B, d_in), p["W_enc"], bias, p["b_dec"],
                                 state["apply_b_dec"], ent)

    @staticmethod
    def _sparse_decode(p: dict[str, Tensor], ent: Entries, *ws: Tensor, norm: bool) -> tuple[Tensor, ...]:
        """sae-lens ``decode`` of each activation vector ``w`` ``[N]`` at the entries (zero
        elsewhere): ``[M, B, d_in]`` each, after the decoder row norms ``[M, d_sae]`` if ``norm``."""
        outs = _DecodeAt.apply(p["W_dec"], ent, norm, *ws)
        outs = outs if isinstance(outs, tuple) else (outs,)
        b = _row(p["b_dec"])
        return (outs[0], *(o + b for o in outs[1:])) if norm else tuple(o + b for o in outs)

    @staticmethod
    def _sq_err(sae_out: Tensor, x: Tensor) -> Tensor:
        """sae-lens's ``mse_loss(...).sum(-1).mean()`` (``F.mse_loss(reduction="none")``): ``[*lead]``."""
        return (sae_out - x.to(sae_out.dtype)).pow(2).sum(dim=-1).mean(dim=-1)

    @classmethod
    def _mse(cls, p: dict[str, Tensor], feature_acts: Tensor, x: Tensor) -> Tensor:
        """sae-lens ``decode`` + ``mse_loss(...).sum(-1).mean()``: ``[*lead]``."""
        return cls._sq_err(feature_acts @ p["W_dec"] + _row(p["b_dec"]), x)

    @staticmethod
    def _out(mse: Tensor, aux: dict[str, Tensor], feature_acts: Tensor | None, fire: Tensor | None = None) -> BatchedOut:
        """Total and loss dict in sae-lens's order (mse, then aux terms in insertion order); fire
        counts from the dense ``feature_acts`` unless given."""
        total = mse
        for v in aux.values():
            total = total + v
        if fire is None:
            if feature_acts is None:
                raise TypeError("_out needs feature_acts or fire")
            with torch.no_grad():
                fire = (feature_acts != 0).sum(dim=-2).to(feature_acts.dtype)
        return BatchedOut(total=total, losses={"mse_loss": mse, **aux}, fire_counts=fire)


class StandardBatched(_PenaltyBatched):
    """sae-lens ``StandardTrainingSAE``: ``relu(sae_in @ W_enc + b_enc)``, loss
    ``mse + mean_b(l1_coef * || f_b * |W_dec rows| ||_p)``.

    Sparse step (``lp_norm`` 1, the suite's): the entries are the active latents (``pre > 0``);
    ReLU's gradient is zero everywhere else, so the decoder, the penalty and every gradient need
    them only."""

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec")
    arch = "standard"
    structural = ("lp_norm",)

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        state = super().init_state(saes)
        self.lp_norm = float(_same(saes, "lp_norm", self.arch))
        return state

    def _member(self, p, x, state, coefs, dead) -> BatchedOut:  # noqa: ARG002 - no dead-latent term
        sae_in, b_row = self._sae_in(p, x, state)
        prod = _CenteredMatmul.apply(sae_in, b_row, p["W_enc"])  # [*lead, B, d_sae]
        if self.lp_norm == 1.0 and self._may_be_sparse(prod):
            with torch.no_grad():
                # prod > -b_enc exactly where the float sum prod + b_enc > 0 (a rounded sum keeps
                # the sign of the exact one): one pass instead of two
                b_enc = _row(p["b_enc"])
                ent = self._entries(lambda rows: prod[..., rows, :] > -b_enc, prod.shape[-2])
            if ent is not None:
                return self._sparse(p, x, state, coefs, sae_in, prod.detach(), ent)
        hidden_pre = prod + _row(p["b_enc"])
        if self.lp_norm == 1.0:
            feature_acts, sparsity, decoded = _ReluL1Decode.apply(hidden_pre, p["W_dec"])  # sparsity [*lead, B]
            mse = self._sq_err(decoded + _row(p["b_dec"]), x)
        else:
            feature_acts = torch.relu(hidden_pre)
            sparsity = (feature_acts * _row(_RowNorm.apply(p["W_dec"]))).norm(p=self.lp_norm, dim=-1)
            mse = self._mse(p, feature_acts, x)
        l1 = (_col(coefs["l1"], sparsity) * sparsity).mean(dim=-1)
        return self._out(mse, {"l1_loss": l1}, feature_acts)

    def _sparse(self, p, x, state, coefs, sae_in, prod, ent: Entries) -> BatchedOut:
        f = torch.relu(self._sparse_pre(p, state, sae_in, prod, ent, p["b_enc"]))  # [N], > 0 at every entry
        W_dec_norm, sae_out = self._sparse_decode(p, ent, f, norm=True)
        mse = self._sq_err(sae_out, x)
        n = ent.per_latent(W_dec_norm)
        sparsity = ent.row_sum(f * n)  # [M, B]: sum_j f_bj |W_dec_j| (f, n >= 0: the L1 norm)
        l1 = (_col(coefs["l1"], sparsity) * sparsity).mean(dim=-1)
        return self._out(mse, {"l1_loss": l1}, None, ent.latent_count(f.detach()))


class JumpReLUBatched(_PenaltyBatched):
    """sae-lens ``JumpReLUTrainingSAE``: ``JumpReLU(sae_in @ W_enc + b_enc, threshold)`` with its
    straight-through estimators; sparsity loss ``step`` (L0), ``quadratic`` (``2/T (L0 - T)^2``) or
    ``tanh``; optional pre-activation loss on dead latents.

    Like sae-lens's ``training_forward_pass``, ``loss`` first clamps ``p["threshold"]`` to >= 0 in
    place (no grad): the projection sae-lens applies before every forward pass.

    Sparse step (without the pre-activation loss, whose gradient reaches every inactive entry of a
    dead latent): the entries are those with ``pre - threshold > -3/4 bandwidth``, a superset of the
    active ones (``pre > threshold``) and of those inside the straight-through window
    (``|pre - threshold| / bandwidth < 1/2``, sae-lens's ``rectangle``), the only places where a
    gradient reaches the pre-activations or the threshold. sae-lens's own ``JumpReLU`` / ``Step``
    functions run on the entries, so the straight-through gradients are sae-lens's formulas.
    """

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    arch = "jumprelu"
    sparse_max_density = 0.13
    structural = ("jumprelu_sparsity_loss_mode", "jumprelu_bandwidth", "jumprelu_ste_to_input", "pre_act_loss_coefficient")

    def supports(self, sae: Any) -> bool:
        return super().supports(sae) and sae.cfg.jumprelu_sparsity_loss_mode in ("step", "tanh", "quadratic")

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        state = super().init_state(saes)
        self.mode = _same(saes, "jumprelu_sparsity_loss_mode", self.arch)
        self.bandwidth = float(_same(saes, "jumprelu_bandwidth", self.arch))
        self.ste_to_input = bool(_same(saes, "jumprelu_ste_to_input", self.arch))
        pre = [s.cfg.pre_act_loss_coefficient for s in saes]
        if len({c is None for c in pre}) > 1:
            raise ConfigError(f"batched {self.arch}: cohort members differ in whether pre_act_loss_coefficient is set "
                              f"({pre}); train them in separate cohorts")
        self.pre_act = pre[0] is not None
        if self.pre_act:
            state["pre_act_coef"] = _per_member(saes, [float(c) for c in pre])
        if self.mode == "quadratic":
            state["target_l0"] = _per_member(saes, [float(s.cfg.target_l0) for s in saes])
        if self.mode == "tanh":
            state["tanh_scale"] = _per_member(saes, [float(s.cfg.jumprelu_tanh_scale) for s in saes])
        return state

    def _prepare(self, p: dict[str, Tensor]) -> None:
        with torch.no_grad():
            p["threshold"].data.clamp_(min=0.0)

    def _member(self, p, x, state, coefs, dead) -> BatchedOut:
        sae_in, b_row = self._sae_in(p, x, state)
        prod = _CenteredMatmul.apply(sae_in, b_row, p["W_enc"])
        hidden_pre = prod + _row(p["b_enc"])  # [*lead, B, d_sae]
        if not self.pre_act and self._may_be_sparse(hidden_pre):
            pre = hidden_pre.detach()
            with torch.no_grad():
                # d > -3/4 bandwidth holds wherever pre > threshold (then d >= 0) or sae-lens's
                # rectangle is nonzero (d / bandwidth > -1/2 after rounding, so d > -bandwidth / 2
                # up to a few ulps): a superset of every entry with a gradient
                t = _row(p["threshold"].detach().to(pre.dtype))
                ent = self._entries(lambda rows: (pre[..., rows, :] - t) > -0.75 * self.bandwidth, pre.shape[-2])
            if ent is not None:
                return self._sparse(p, x, state, coefs, sae_in, prod.detach(), ent)
        # The threshold is float32 whatever the SAE dtype (sae-lens) and cast separately in encode
        # and in the aux loss, so each path's gradient is rounded back to float32 on its own before
        # they add up: two casts here too (one input each of _JumpReLUStep).
        threshold = p["threshold"].to(hidden_pre.dtype)  # [*lead, d_sae], the aux loss's cast
        step_l0 = self.mode in ("step", "quadratic")
        feature_acts, l0, fired = _JumpReLUStep.apply(hidden_pre, p["threshold"].to(hidden_pre.dtype),
                                                      threshold if step_l0 else None, self.bandwidth,
                                                      self.ste_to_input)
        mse = self._mse(p, feature_acts, x)
        # [*lead, d_sae]; only the tanh penalty and the pre-act loss use it (None otherwise)
        W_dec_norm: Any = _RowNorm.apply(p["W_dec"]) if self.mode == "tanh" or self.pre_act else None
        if step_l0:
            per_item = self._l0_penalty(state, l0)
        elif self.mode == "tanh":
            per_item = torch.tanh(_col(state["tanh_scale"], hidden_pre).unsqueeze(-1) * feature_acts
                                  * _row(W_dec_norm)).sum(dim=-1)
        else:  # pragma: no cover - supports() refuses other modes
            raise ConfigError(f"batched jumprelu: sparsity loss mode {self.mode!r}")
        losses = {"l0_loss": (_col(coefs["l0"], per_item) * per_item).mean(dim=-1)}
        if self.pre_act:
            losses["pre_act_loss"] = self._pre_act(state, threshold, hidden_pre, dead, W_dec_norm)
        return self._out(mse, losses, None, fired)

    def _l0_penalty(self, state: dict[str, Tensor], l0: Tensor) -> Tensor:
        """Per-sample penalty of the ``step`` / ``quadratic`` modes from ``l0`` ``[*lead, B]``."""
        if self.mode != "quadratic":
            return l0
        target = state["target_l0"]
        return _col(2 / target, l0) * (l0 - _col(target, l0)) ** 2

    def _sparse(self, p, x, state, coefs, sae_in, prod, ent: Entries) -> BatchedOut:
        from sae_lens.saes.jumprelu_sae import JumpReLU, Step

        # sae-lens's functions on a [1, N] view: their dim-0 sum of the threshold gradient is then
        # per entry; the gather below adds the entries of each latent up. Two casts of the
        # threshold, one per use, as in the dense step.
        h = self._sparse_pre(p, state, sae_in, prod, ent, p["b_enc"]).unsqueeze(0)  # [1, N]
        t_enc = ent.per_latent(p["threshold"].to(prod.dtype))
        f = JumpReLU.apply(h, t_enc, self.bandwidth, self.ste_to_input).squeeze(0)  # [N], 0 where inactive
        tanh = self.mode == "tanh"
        decoded = self._sparse_decode(p, ent, f, norm=tanh)
        mse = self._sq_err(decoded[-1], x)
        t_aux = ent.per_latent(p["threshold"].to(prod.dtype))
        if self.mode in ("step", "quadratic"):
            l0 = ent.row_sum(Step.apply(h, t_aux, self.bandwidth, self.ste_to_input).squeeze(0))  # [M, B]
            per_item = self._l0_penalty(state, l0)
        elif tanh:
            n = ent.per_latent(decoded[0])
            scale = ent.per_member(state["tanh_scale"].to(f.dtype))
            per_item = ent.row_sum(torch.tanh(scale * f * n))  # tanh(0) = 0 off the entries
        else:  # pragma: no cover - supports() refuses other modes
            raise ConfigError(f"batched jumprelu: sparsity loss mode {self.mode!r}")
        losses = {"l0_loss": (_col(coefs["l0"], per_item) * per_item).mean(dim=-1)}
        return self._out(mse, losses, None, ent.latent_count(f.detach()))

    @staticmethod
    def _pre_act(state: dict[str, Tensor], threshold: Tensor, hidden_pre: Tensor,
                 dead: Tensor | None, W_dec_norm: Tensor) -> Tensor:
        """sae-lens ``calculate_pre_act_loss``: ``coef * mean_b sum_j relu(t_j - h_bj) * dead_j *
        |W_dec_j|`` ``[*lead]``; a member with no dead latent gets sae-lens's constant 0 (here the
        same expression with an all-False mask: 0 with zero gradient)."""
        if dead is None:
            return hidden_pre.new_zeros(hidden_pre.shape[:-2])
        per_item = ((_row(threshold) - hidden_pre).relu() * _row(dead) * _row(W_dec_norm)).sum(dim=-1)
        return _col(state["pre_act_coef"], per_item).squeeze(-1) * per_item.mean(dim=-1)


class GatedBatched(_PenaltyBatched):
    """sae-lens ``GatedTrainingSAE``: gate ``1[sae_in @ W_enc + b_gate > 0]`` times magnitude
    ``relu(sae_in @ (W_enc * exp(r_mag)) + b_mag)``; loss ``mse + l1_coef * mean_b sum_j
    relu(pi_gate)_bj |W_dec_j| + || relu(pi_gate) @ W_dec + b_dec - x ||^2``.

    sae-lens computes the gate pre-activation ``pi_gate`` twice (in ``encode_with_hidden_pre``,
    where only its sign is used, and again in ``calculate_aux_loss``) from the same expression;
    here it is computed once: identical values, and the sign path carries no gradient (b_dec's
    gradient terms then add up in another order: equal to rounding, not bit for bit). The
    magnitude path's ``sae_in @ (W_enc * exp(r_mag))`` is ``(sae_in @ W_enc) * exp(r_mag)``, the
    gate's product times a per-latent factor (equal to rounding): one encoder GEMM instead of two
    forward and two backward, and ``W_enc``'s gradient from both paths in one GEMM.

    Sparse step: the entries are the open gates (``pi_gate > 0``). The activations, ``relu(pi_gate)``
    and every gradient vanish elsewhere, so both decodes, the penalty and all gradients need them
    only.
    """

    param_names = ("W_enc", "W_dec", "b_gate", "b_mag", "r_mag", "b_dec")
    arch = "gated"
    sparse_max_density = 0.16

    def _member(self, p, x, state, coefs, dead) -> BatchedOut:  # noqa: ARG002 - no dead-latent term
        W_enc = p["W_enc"]
        sae_in, b_row = self._sae_in(p, x, state)
        prod = _CenteredMatmul.apply(sae_in, b_row, W_enc)  # [*lead, B, d_sae]
        if self._may_be_sparse(prod):
            with torch.no_grad():  # prod > -b_gate exactly where prod + b_gate > 0 (see StandardBatched)
                b_gate = _row(p["b_gate"])
                ent = self._entries(lambda rows: prod[..., rows, :] > -b_gate, prod.shape[-2])
            if ent is not None:
                return self._sparse(p, x, state, coefs, sae_in, prod.detach(), ent)
        pi_gate = prod + _row(p["b_gate"])
        active = (pi_gate > 0).to(pi_gate.dtype)
        # sae-lens's sae_in @ (W_enc * exp(r_mag)), as the gate's product times exp(r_mag)
        mag_pre = prod * _row(p["r_mag"].exp()) + _row(p["b_mag"])
        feature_acts = active * torch.relu(mag_pre)
        pi_gate_act = torch.relu(pi_gate)
        W_dec_norm, decoded, via_gate = _DenseDecode.apply(p["W_dec"], feature_acts, pi_gate_act)
        b_dec = _row(p["b_dec"])
        mse = self._sq_err(decoded + b_dec, x)
        l1 = _col(coefs["l1"], pi_gate_act).squeeze(-1) * torch.sum(pi_gate_act * _row(W_dec_norm), dim=-1).mean(dim=-1)
        aux = self._sq_err(via_gate + b_dec, x)
        return self._out(mse, {"l1_loss": l1, "auxiliary_reconstruction_loss": aux}, feature_acts)

    def _sparse(self, p, x, state, coefs, sae_in, prod, ent: Entries) -> BatchedOut:
        # the bias-free product at the entries; b_gate and b_mag are added below, each with its own
        # gradient (SelectedPre still hands b_dec its share through W_enc)
        prod_e = self._sparse_pre(p, state, sae_in, prod, ent, None)  # [N]
        pi = torch.relu(prod_e + ent.per_latent(p["b_gate"]))  # relu(pi_gate), > 0 at every entry
        mag = prod_e * ent.per_latent(p["r_mag"].exp()) + ent.per_latent(p["b_mag"])
        f = torch.relu(mag)  # the gate is open at every entry
        W_dec_norm, sae_out, via_gate = self._sparse_decode(p, ent, f, pi, norm=True)
        mse = self._sq_err(sae_out, x)
        n = ent.per_latent(W_dec_norm)
        l1 = coefs["l1"].to(pi.dtype) * ent.row_sum(pi * n).mean(dim=-1)
        aux = self._sq_err(via_gate, x)
        return self._out(mse, {"l1_loss": l1, "auxiliary_reconstruction_loss": aux}, None, ent.latent_count(f.detach()))
