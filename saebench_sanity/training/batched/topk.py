"""Batched training math of sae-lens's TopK family over a cohort of M members.

Reproduces ``training_forward_pass`` of ``TopKTrainingSAE``, ``BatchTopKTrainingSAE`` and
``MatryoshkaBatchTopKTrainingSAE`` (sae-lens 6.x) for stacked parameters ``W_enc [M, d_in, d_sae]``,
``W_dec [M, d_sae, d_in]``, ``b_enc [M, d_sae]``, ``b_dec [M, d_in]`` on one shared batch.

The math, per member (``n = ||W_dec rows||``, ``pre = (x - b_dec) @ W_enc + b_enc``):

* selection score ``s = pre * n`` if ``rescale_acts_by_decoder_norm`` else ``pre`` (the flag is
  per member: ``frozen_encoder`` turns it off for its member only);
* TopK keeps the k largest ``s`` of each sample, BatchTopK the ``int(k * B)`` largest ``relu(s)``
  of the whole batch; the kept latents decode with weight ``relu(pre)``. sae-lens writes this as
  ``relu(pre * n) * (1 / n)``: the decoder norm cancels, so it gets no gradient from either side
  (sae-lens differentiates through it twice and the two terms cancel to rounding). We skip it;
  the selection (no gradient) still uses ``s``.
* AuxK loss (sae-lens ``calculate_topk_aux_loss``): the ``k_aux = min(d_in // 2, n_dead)`` dead
  latents with largest ``s`` decode with weight ``pre`` (again ``s / n``), no ``b_dec``, against the
  detached residual; times ``aux_loss_coefficient * min(n_dead / (d_in // 2), 1)``.
* Matryoshka: one extra MSE per inner width (``inner_mse_loss_{w}``), the reconstruction from the
  kept latents below ``w`` plus ``b_dec``.
* BatchTopK's ``topk_threshold`` EMA (float64) is updated inside ``loss`` under ``no_grad``, as
  sae-lens does inside ``training_forward_pass``; ``update_state`` is therefore a no-op.

Two implementations of the same math: **dense** (scatter the kept values into ``[M, B, d_sae]``,
batched matmuls, autograd) and **sparse** (decode through an ``embedding_bag`` over the kept
rows; gradients at the kept entries only: ``torch.sparse.sampled_addmm`` for the decode weights,
sparse-dense matmuls for ``W_dec`` / ``W_enc`` / the input). ``use_sparse`` chooses (measured in
benchmarks/test_bench_cohort.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from saebench_sanity.training.batched.base import BatchedOut, StepCtx, accelerator_paths, copy_params_into
from saebench_sanity.training.batched.sparse import LatentMajor
from saebench_sanity.training.batched.sparse import SelectedPre as _SelectedPre
from saebench_sanity.training.batched.sparse import SparseDecode as _SparseDecode

#: AuxK's top-k over the latents dead in some member only, when they are at most half of them (the
#: same selection, loss and gradients: tests/test_engine_cohort.py turns it off to compare)
AUX_DEAD_COLUMNS = True
#: sae-lens config values this math reproduces; any other value sends the member to the solo path.
_REQUIRED_CFG = {"normalize_activations": "none", "reshape_activations": "none"}


def use_sparse(d_in: int, d_sae: int, k_per_sample: float, dtype: torch.dtype, device: torch.device) -> bool:
    """The rule choosing the sparse step: CPU or CUDA, float32 / float64 (torch's sparse kernels
    have no bfloat16 on CPU, no CSR on MPS) and at most a quarter of the latents kept. One-off
    measurement at one CPU thread (a 4-member TopK ``CohortProgram.step``, forced sparse vs dense,
    per-member speed-up of sparse): 32 x 96 k 3 1.0x; 32 x 256 k 4 1.1x; 32 x 1024 k 6 1.9-2.5x;
    100 x 3200 k 20 1.7x; 576 x 1152 k 32 ~2x. Never slower in what was measured."""
    if dtype not in (torch.float32, torch.float64) or torch.device(device).type not in ("cpu", "cuda"):
        return False
    return k_per_sample * 4 <= d_sae


# -- selections ---------------------------------------------------------------------------------------
def _topk_exact(v: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``v.topk(k, dim=-1, sorted=False)`` for ``v [R, N]``: the same entries (up to ties),
    found faster on CPU through a lower bound of each row's k-th largest value.

    Split each row into ``>= 2k`` chunks; the k-th largest chunk maximum is <= the row's k-th
    largest value (k distinct entries reach it), so the entries ``>= `` it contain the top k.
    Any partition works; chunk ``i`` holds the entries ``i, i + n_chunks, ...`` (strided), so the
    maxima reduce over a middle dimension with the chunks contiguous ([1024, 1152] k 32 at one
    thread: 0.24 ms against 1.09 ms for contiguous chunks, ``benchmarks/test_bench_cohort.py -k
    chunk_maxima``).
    torch's ``topk`` then runs on those few candidates. If a row has fewer than k candidates
    (NaN) or too many (e.g. BatchTopK's zeros), or the k-th value is tied, plain ``topk`` runs instead. Measured at one
    thread: [1024, 1152] k 32 8.4 -> 5.0 ms; BatchTopK [4, 294912] k 8192 8.7 -> 4.9 ms;
    [1, 16.8M] k 65536 213 -> 57 ms; slower for long rows ([1024, 16384] k 64: 46 -> 61 ms) and
    tiny k, where plain ``topk`` is used (the rule below; one-off measurements at one thread).
    Hand-written: torch has no faster exact top-k on CPU."""
    R, N = v.shape
    if accelerator_paths(v.device) or k < 16 or N < 8 * k or (R > 64 and N > 4096):
        return v.topk(k, dim=-1, sorted=False)
    c = N // (2 * k)
    n_chunks = N // c
    maxima = v[:, :n_chunks * c].reshape(R, c, n_chunks).amax(1)
    thr = maxima.topk(k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    nz = (v >= thr).nonzero()
    rows, cols = nz[:, 0], nz[:, 1]
    counts = torch.bincount(rows, minlength=R)
    lo, hi = counts.aminmax()
    min_c, max_c = int(lo), int(hi)
    if min_c < k or max_c * 2 > N:
        return v.topk(k, dim=-1, sorted=False)
    start = counts.cumsum(0) - counts
    pos = torch.arange(rows.numel(), device=v.device) - start[rows]
    buf = torch.full((R * max_c,), -math.inf, dtype=v.dtype, device=v.device)
    buf[rows * max_c + pos] = v[rows, cols]
    cand = buf.view(R, max_c)
    vals, j = cand.topk(k, dim=-1, sorted=False)
    # A tie at the k-th value (duplicate samples make them real) is broken by torch's topk in an
    # implementation-defined way that depends on the array it sees: hand such rows' choice back to
    # plain topk on the full rows, so members keep following sae-lens exactly.
    kth = vals.amin(-1, keepdim=True)
    if bool(((cand == kth).sum(-1) > (vals == kth).sum(-1)).any()):
        return v.topk(k, dim=-1, sorted=False)
    return vals, cols[start.unsqueeze(1) + j]  # j < counts[row]: padding (-inf) is never among the top k


def _aux_candidates(score: Tensor, dead: Tensor, kmax: int, *, host_counts: bool) -> tuple[Tensor, Tensor | None, int]:
    """AuxK's scores to take the top-k of: ``(masked, cols, k)``, ``masked`` ``[M, B, n]`` with
    ``-inf`` where a latent is alive in that member. When the latents dead in some member are at
    most half of ``d_sae`` (and counted on the host), ``masked`` holds those columns only
    (``cols``, their latent indices) and ``k = min(kmax, len(cols))``: few latents are dead on most
    sets (TopK-family cells of synth-zipf / synth-corr-hier end with 0-10 of 1024 dead), where
    the full ``[M, B, d_sae]`` top-k was most of the AuxK term's cost (docs/performance.md);
    otherwise every column, ``cols`` None and ``k = kmax``. The same selection either way (a
    test trains both)."""
    d_sae = score.shape[-1]
    cols = dead.any(0).nonzero().squeeze(1) if AUX_DEAD_COLUMNS and host_counts else None
    if cols is not None and 2 * cols.numel() <= d_sae:
        cand = score.index_select(-1, cols)
        return (torch.where(dead.index_select(-1, cols).unsqueeze(1), cand, torch.full_like(cand, -math.inf)),
                cols, min(kmax, cols.numel()))
    return torch.where(dead.unsqueeze(1), score, torch.full_like(score, -math.inf)), None, kmax


class _Sel(LatentMajor):
    """Kept entries of every member: ``f [M, N]`` member-local flat index ``b * d_sae + j``,
    grouped by sample ``b`` ascending; ``valid [M, N]`` bool or None (all valid)."""

    def __init__(self, f: Tensor, valid: Tensor | None, B: int, d_sae: int) -> None:
        self.f, self.valid, self.B, self.d_sae = f, valid, B, d_sae
        M, N = f.shape
        self.M = M
        dev = f.device
        self.latent = f % d_sae  # [M, N]
        self.rows = (f // d_sae + torch.arange(M, device=dev).view(M, 1) * B).reshape(-1)
        self.cols = (self.latent + torch.arange(M, device=dev).view(M, 1) * d_sae).reshape(-1)
        self._crow: Tensor | None = None
        self._by_latent: tuple[Tensor, Tensor, Tensor] | None = None

    def by_row_pattern(self, like: Tensor) -> Tensor:
        """CSR ``[M * B, M * d_sae]`` pattern of the entries (values zero), for ``sampled_addmm``."""
        M = self.f.shape[0]
        return torch.sparse_csr_tensor(self.crow(), self.cols, torch.zeros_like(like), (M * self.B, M * self.d_sae),
                                       check_invariants=False)

    def crow(self) -> Tensor:
        """CSR row pointer ``[M * B + 1]`` of the entries (rows grouped ascending)."""
        if self._crow is None:
            R = self.f.shape[0] * self.B
            counts = torch.bincount(self.rows, minlength=R)
            crow = torch.zeros(R + 1, dtype=torch.long, device=self.f.device)
            crow[1:] = counts.cumsum(0)
            self._crow = crow
        return self._crow

    def mask(self, w: Tensor) -> Tensor:
        return w if self.valid is None else torch.where(self.valid, w, torch.zeros_like(w))


def _topk_sel(score: Tensor, ks: list[int]) -> tuple[_Sel, Tensor]:
    """Per-sample top-``ks[m]`` of ``score [M, B, d_sae]``; returns the selection and the kept scores."""
    M, B, d_sae = score.shape
    kmax = max(ks)
    vary = min(ks) != kmax
    if vary:
        vals, idx = score.topk(kmax, dim=-1, sorted=True)
    else:
        vals, idx = _topk_exact(score.reshape(M * B, d_sae), kmax)
        vals, idx = vals.view(M, B, kmax), idx.view(M, B, kmax)
    valid = None
    if vary:
        k_t = torch.tensor(ks, device=score.device).view(M, 1, 1)
        valid = (torch.arange(kmax, device=score.device).view(1, 1, kmax) < k_t).expand(M, B, kmax)
    idx, vals, valid = _canonical(idx, vals, valid)
    f = (idx + torch.arange(B, device=score.device).view(1, B, 1) * d_sae).reshape(M, -1)
    return _Sel(f, None if valid is None else valid.reshape(M, -1), B, d_sae), vals.reshape(M, -1)


def _canonical(idx: Tensor, vals: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Entries of each row in ascending latent order: the sums over them (decode, gradients) then
    round the same whichever way the set was found (``topk`` returns it in an arbitrary order that
    depends on the path and, with ``sorted=True``, on the other members' needs)."""
    idx, order = idx.sort(dim=-1)
    vals = vals.gather(-1, order)
    return idx, vals, None if valid is None else valid.gather(-1, order)


def _batch_topk_sel(score: Tensor, n_keep: list[int]) -> tuple[_Sel, Tensor]:
    """BatchTopK: the ``n_keep[m]`` largest ``relu(score[m])`` over the whole batch."""
    M, B, d_sae = score.shape
    nmax = max(n_keep)
    vary = min(n_keep) != nmax
    flat = score.relu().reshape(M, B * d_sae)
    vals, f = flat.topk(nmax, dim=-1, sorted=True) if vary else _topk_exact(flat, nmax)
    valid = None
    if vary:
        valid = torch.arange(nmax, device=score.device).view(1, nmax) < torch.tensor(n_keep, device=score.device).view(M, 1)
    f, order = f.sort(dim=-1)  # group by sample for the CSR / embedding_bag layout
    vals = vals.gather(-1, order)
    if valid is not None:
        valid = valid.gather(-1, order)
    return _Sel(f, valid, B, d_sae), vals


# -- the family ---------------------------------------------------------------------------------------
class _TopKFamily:
    """Shared math; subclasses set the sae-lens class and the selection."""

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec")
    #: the engine stores W_enc as ``[M, d_sae, d_in]`` (latents as rows) and hands ``loss`` the
    #: transposed view: the sparse step's W_enc gradient comes out in that layout, and a
    #: transposing copy of it cost more than the whole sparse backward (measured at 768 x 16384).
    transposed = ("W_enc",)
    batch_topk = False
    matryoshka = False

    def __init__(self, sparse: bool | None = None) -> None:
        #: True / False forces the sparse / dense step; None applies ``use_sparse``.
        self.sparse = sparse

    # -- contract ---------------------------------------------------------------------------------
    def _cls(self) -> type[Any]:
        raise NotImplementedError

    def supports(self, sae: Any) -> bool:
        if type(sae) is not self._cls():
            return False
        cfg = sae.cfg
        for key, want in _REQUIRED_CFG.items():
            if getattr(cfg, key, want) != want:
                return False
        if self.matryoshka and bool(getattr(cfg, "use_matryoshka_aux_loss", False)):
            return False  # per-level AuxK: not batched, the solo path trains it
        if getattr(sae, "b_enc", None) is None or not isinstance(sae.W_enc, torch.nn.Parameter):
            return False
        names = {n for n, _ in sae.named_parameters()}
        return names == set(self.param_names)

    def group_key(self, sae: Any) -> tuple:
        """Members with equal keys can share one stacked program."""
        key: tuple = (type(sae).__name__, int(sae.cfg.d_in), int(sae.cfg.d_sae))
        if self.matryoshka:
            key += (tuple(int(w) for w in sae.cfg.matryoshka_widths),)
        return key

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        dev = saes[0].W_dec.device
        cfgs = [s.cfg for s in saes]
        state = {
            "rescale": torch.tensor([bool(c.rescale_acts_by_decoder_norm) for c in cfgs], device=dev),
            "apply_b_dec": torch.tensor([1.0 if c.apply_b_dec_to_input else 0.0 for c in cfgs], device=dev),
            "aux_coef": torch.tensor([float(c.aux_loss_coefficient) for c in cfgs], dtype=torch.float64, device=dev),
            # host-side per-member config (never moved to the device: topk sizes are Python ints)
            "host_k": torch.tensor([float(c.k) for c in cfgs], dtype=torch.float64),
        }
        if self.batch_topk:
            state["topk_threshold"] = torch.stack([s.topk_threshold.detach().to(torch.float64) for s in saes]).to(dev)
            state["threshold_lr"] = torch.tensor([float(c.topk_threshold_lr) for c in cfgs], dtype=torch.float64, device=dev)
        return state

    def update_state(self, state: dict[str, Tensor], p: dict[str, Tensor], x: Tensor, ctx: StepCtx) -> None:
        """No-op: BatchTopK's threshold EMA runs inside ``loss`` (under ``no_grad``)."""

    def write_back(self, p: dict[str, Tensor], state: dict[str, Tensor], saes: list[Any]) -> None:
        copy_params_into(p, saes, self.param_names)
        if self.batch_topk:
            for i, sae in enumerate(saes):
                sae.topk_threshold = state["topk_threshold"][i].detach().to(
                    device=sae.topk_threshold.device, dtype=sae.topk_threshold.dtype).clone()

    # -- math ---------------------------------------------------------------------------------------
    def _select(self, score: Tensor, state: dict[str, Tensor]) -> tuple[_Sel, Tensor]:
        ks = state["host_k"].tolist()
        if self.batch_topk:
            return _batch_topk_sel(score, [int(k * score.shape[1]) for k in ks])
        return _topk_sel(score, [int(k) for k in ks])

    def loss(self, p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor], ctx: StepCtx) -> BatchedOut:
        W_enc, W_dec, b_enc, b_dec = p["W_enc"], p["W_dec"], p["b_enc"], p["b_dec"]
        M, d_in, d_sae = W_enc.shape
        B = x.shape[0]
        x = x.to(W_dec.dtype)
        k_max = float(state["host_k"].max())
        sparse = self.sparse if self.sparse is not None else use_sparse(d_in, d_sae, k_max, W_dec.dtype, W_dec.device)

        sae_in = x.unsqueeze(0) - (state["apply_b_dec"].to(b_dec.dtype).unsqueeze(1) * b_dec).unsqueeze(1)  # [M, B, d_in]
        if sparse:
            with torch.no_grad():
                pre_d = torch.baddbmm(b_enc.detach().unsqueeze(1), sae_in.detach(), W_enc.detach())
        else:
            pre_d = torch.baddbmm(b_enc.unsqueeze(1), sae_in, W_enc)  # [M, B, d_sae]
        with torch.no_grad():
            norm = W_dec.detach().norm(dim=-1)  # [M, d_sae]
            scale = torch.where(state["rescale"].unsqueeze(1), norm, torch.ones_like(norm))
            score = pre_d.detach() * scale.unsqueeze(1)
        sel, kept_scores = self._select(score, state)

        pre_flat = pre_d.reshape(M, B * d_sae)
        if sparse:
            sae_in_flat = sae_in.detach().reshape(M * B, d_in)
            W_dec_flat = W_dec.reshape(M * d_sae, d_in)
            a = state["apply_b_dec"]

            def gather_pre(s: _Sel) -> Tensor:
                vals = pre_flat.gather(-1, s.f).reshape(-1)
                return _SelectedPre.apply(vals, sae_in_flat, W_enc, b_enc, b_dec, a, s).view(M, -1)

            def decode(s: _Sel, w: Tensor) -> Tensor:
                return _SparseDecode.apply(w.reshape(-1), W_dec_flat, s).view(M, B, d_in)
        else:
            def gather_pre(s: _Sel) -> Tensor:
                return pre_flat.gather(-1, s.f)

            def decode(s: _Sel, w: Tensor) -> Tensor:
                acts = torch.zeros(M, B * d_sae, dtype=w.dtype, device=w.device).scatter(-1, s.f, w)
                return torch.bmm(acts.view(M, B, d_sae), W_dec)

        pre_sel = gather_pre(sel)  # [M, N]
        w = sel.mask(pre_sel.relu())
        out = decode(sel, w) + b_dec.unsqueeze(1)  # [M, B, d_in]
        mse = (out - x).pow(2).sum(-1).mean(-1)  # [M]
        losses: dict[str, Tensor] = {"mse_loss": mse}

        with torch.no_grad():
            fired = kept_scores > 0
            if sel.valid is not None:
                fired &= sel.valid
            fire_counts = torch.zeros(M, d_sae, dtype=W_dec.dtype, device=W_dec.device).scatter_add_(
                -1, sel.latent, fired.to(W_dec.dtype))
            if self.batch_topk:
                self._update_threshold(state, kept_scores, fired)

        aux = self._aux_loss(state, ctx, score, x, out, gather_pre, decode, M, B, d_in, d_sae, W_dec)
        losses["auxiliary_reconstruction_loss"] = aux
        total = mse + aux
        if self.matryoshka:
            for width in state["shared_widths"].tolist()[:-1]:
                w_in = torch.where(sel.latent < width, w, torch.zeros_like(w))
                inner_out = decode(sel, w_in) + b_dec.unsqueeze(1)
                inner = (inner_out - x).pow(2).sum(-1).mean(-1)
                losses[f"inner_mse_loss_{width}"] = inner
                total = total + inner
        return BatchedOut(total=total, losses=losses, fire_counts=fire_counts)

    def _update_threshold(self, state: dict[str, Tensor], kept_scores: Tensor, fired: Tensor) -> None:
        """sae-lens ``update_topk_threshold``: EMA of the smallest positive kept activation."""
        inf = torch.full_like(kept_scores, math.inf)
        min_pos = torch.where(fired, kept_scores, inf).amin(-1).to(torch.float64)  # [M]
        thr, lr = state["topk_threshold"], state["threshold_lr"]
        new = (1 - lr) * thr + lr * min_pos
        state["topk_threshold"] = torch.where(torch.isfinite(min_pos), new, thr)

    def _aux_loss(self, state, ctx, score, x, out, gather_pre, decode, M, B, d_in, d_sae, W_dec) -> Tensor:
        """sae-lens ``calculate_topk_aux_loss`` per member ``[M]`` (0 where no latent is dead)."""
        dead = ctx.dead_neuron_mask
        zero = torch.zeros(M, dtype=W_dec.dtype, device=W_dec.device)
        if dead is None:
            return zero
        dead = dead.to(device=score.device, dtype=torch.bool)
        k_aux0 = d_in // 2
        if not accelerator_paths(score.device):  # a host read is free on CPU: skip the term like sae-lens does
            n_dead_host = dead.sum(-1).tolist()
            if max(n_dead_host) == 0:
                return zero
        else:
            n_dead_host = None
        kmax = min(k_aux0, d_sae)
        if kmax == 0:
            return zero
        n_dead = dead.sum(-1)  # [M]
        masked, cols, k = _aux_candidates(score, dead, kmax, host_counts=n_dead_host is not None)
        k_m = torch.clamp(n_dead, max=k_aux0)
        sorted_needed = n_dead_host is None or min(min(n, k_aux0) for n in n_dead_host) < k
        vals, idx = masked.topk(k, dim=-1, sorted=sorted_needed)
        if cols is not None:
            idx = cols[idx]
        valid = None
        if sorted_needed:
            valid = (torch.arange(k, device=score.device).view(1, 1, k) < k_m.view(M, 1, 1)).expand(M, B, k)
        idx, _, valid = _canonical(idx, vals, valid)
        f = (idx + torch.arange(B, device=score.device).view(1, B, 1) * d_sae).reshape(M, -1)
        s = _Sel(f, None if valid is None else valid.reshape(M, -1), B, d_sae)
        u = s.mask(gather_pre(s))
        recons = decode(s, u)
        residual = (x - out).detach()
        per = (recons - residual).pow(2).sum(-1).mean(-1)  # [M]
        # sae-lens: aux_loss_coefficient * min(num_dead / k_aux, 1.0) * auxk_loss (python floats first)
        scale = torch.clamp(n_dead.to(torch.float64) / k_aux0, max=1.0)
        coef = (state["aux_coef"] * scale).to(per.dtype)
        return torch.where(n_dead > 0, coef * per, zero)


class TopKBatched(_TopKFamily):
    """sae-lens ``TopKTrainingSAE``."""

    def _cls(self) -> type:
        from sae_lens.saes.topk_sae import TopKTrainingSAE

        return TopKTrainingSAE


class BatchTopKBatched(_TopKFamily):
    """sae-lens ``BatchTopKTrainingSAE`` (EMA ``topk_threshold`` per member, float64)."""

    batch_topk = True

    def _cls(self) -> type:
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE

        return BatchTopKTrainingSAE


class MatryoshkaBatchTopKBatched(_TopKFamily):
    """sae-lens ``MatryoshkaBatchTopKTrainingSAE`` (BatchTopK plus one MSE per inner width;
    ``use_matryoshka_aux_loss = True`` is not batched: ``supports`` says False)."""

    batch_topk = True
    matryoshka = True

    def _cls(self) -> type:
        from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAE

        return MatryoshkaBatchTopKTrainingSAE

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        widths = {tuple(int(w) for w in s.cfg.matryoshka_widths) for s in saes}
        if len(widths) != 1:
            from saebench_sanity.errors import PluginError

            raise PluginError(f"matryoshka cohort with different widths {sorted(widths)}; group members by group_key")
        state = super().init_state(saes)
        state["shared_widths"] = torch.tensor(next(iter(widths)), dtype=torch.long)
        return state
