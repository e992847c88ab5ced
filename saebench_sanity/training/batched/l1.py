"""Batched training math of sae-lens's penalty-based SAEs over a cohort of M members:
``StandardTrainingSAE`` (ReLU + decoder-norm-weighted Lp penalty), ``JumpReLUTrainingSAE``
(learned thresholds, straight-through L0 / tanh / quadratic-target penalty, optional pre-act loss)
and ``GatedTrainingSAE`` (gate and magnitude paths, L1 on the gate, auxiliary gate reconstruction).

Each ``loss`` is its class's ``training_forward_pass`` over stacked parameters ``[M, ...]``,
per-member numbers ``[M]`` and activations ``[M, B, d_sae]``, the batch ``x [B, d_in]`` shared
(``torch.matmul`` on ``[M, ...]`` runs, per member, the same GEMM as sae-lens's 2-D ``@``). The
losses are sae-lens's operations in sae-lens's order; in float64 each member's loss and gradients
equal its solo sae-lens step to rounding (tests/test_batched_l1.py). JumpReLU uses sae-lens's own
``Step`` / ``JumpReLU`` autograd functions on a ``[B, M, d_sae]`` view, so the straight-through
gradients are sae-lens's by construction. Three backward passes are written by hand to save work
(same gradients, sums in another order): ``b_dec``'s gradient through the encoder as a
vector-matrix product instead of a GEMM (``_CenteredMatmul``), the decoder row norms
(``_RowNorm``), and ReLU with its L1 penalty (``_ReluL1``).

Config that must be the same for the whole cohort (it changes the program, not a number):
``lp_norm`` (Standard), ``jumprelu_sparsity_loss_mode``, ``jumprelu_bandwidth``,
``jumprelu_ste_to_input`` and whether ``pre_act_loss_coefficient`` is set (JumpReLU). ``group_key``
keeps members that differ in them apart (the engine runs one program per key) and ``init_state``
binds them to the instance (one instance per cohort). Per-member numbers ride in the state:
``apply_b_dec_to_input``, ``target_l0``, ``jumprelu_tanh_scale``, ``pre_act_loss_coefficient``; the
sparsity coefficients come per member from ``StepCtx``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from saebench_sanity.errors import ConfigError
from saebench_sanity.training.batched.base import BatchedOut, StepCtx, copy_params_into

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
    """``(x - b_row) @ W`` ``[*lead, B, n]`` for a constant batch ``x`` ``[B, k]``, ``b_row``
    ``[*lead, 1, k]``, ``W`` ``[*lead, k, n]``: the values of sae-lens's ``sae_in @ W`` bit for bit.

    Written by hand because autograd would form the gradient wrt ``sae_in`` (a ``[B, k] x [k, n]``
    GEMM, a sixth of a ReLU step's GEMM work) only to sum it over the batch for ``b_dec``; here
    ``b_row``'s gradient is ``-(sum_b g) @ W^T``, a vector-matrix product (equal to rounding).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, b_row: Tensor, W: Tensor) -> Tensor:
        sae_in = x - b_row
        ctx.save_for_backward(sae_in, W)
        return sae_in @ W

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[None, Tensor | None, Tensor | None]:  # type: ignore[override]
        sae_in, W = ctx.saved_tensors
        g_b = -(g.sum(dim=-2, keepdim=True) @ W.mT) if ctx.needs_input_grad[1] else None
        g_W = sae_in.mT @ g if ctx.needs_input_grad[2] else None
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


class _ReluL1(torch.autograd.Function):
    """``(relu(h), sum_j relu(h)_bj * n_j)``: ReLU activations ``[*lead, B, d]`` and their
    decoder-norm-weighted L1 norm per sample ``[*lead, B]`` (sae-lens's ``(f * n).norm(p=1, dim=-1)``
    for ``f, n >= 0``), as one matrix-vector product.

    Written by hand to save passes over ``[*lead, B, d]``: torch would form ``f * n``, its norm,
    ``sgn`` and two products in the backward. The gradient is torch's (``sgn(0) = 0`` and the ReLU
    mask agree: both zero where ``h <= 0``); sums run in another order (equal to rounding)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
        f = torch.relu(h)
        ctx.save_for_backward(f, n)
        return f, (f @ n.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def backward(ctx: Any, g_f: Tensor | None, g_s: Tensor | None) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        f, n = ctx.saved_tensors
        g_n = None
        if g_s is None:
            g = g_f
        else:
            g_n = (g_s.unsqueeze(-2) @ f).squeeze(-2)
            outer = (g_s.unsqueeze(-1), n.unsqueeze(-2))
            g = outer[0] * outer[1] if g_f is None else torch.addcmul(g_f, *outer)
        g_h = None if g is None else torch.ops.aten.threshold_backward(g, f, 0)
        return g_h, g_n


class _PenaltyBatched:
    """Shared parts of the three archs: support checks, grouping, state, write-back."""

    param_names: tuple[str, ...] = ()
    arch = "?"

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
        return self._member(p, x, state, ctx.coefficients, ctx.dead_neuron_mask)

    def _prepare(self, p: dict[str, Tensor]) -> None:
        """In-place, no-grad changes sae-lens makes to the parameters before its forward pass."""

    def _member(self, p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor],
                coefs: dict[str, Tensor], dead: Tensor | None) -> BatchedOut:
        """The loss over leading member dims ``lead`` (``(M,)`` here; the code also runs for one
        member, ``lead = ()``): ``total``/losses ``[*lead]``, fire counts ``[*lead, d_sae]``."""
        raise NotImplementedError

    @staticmethod
    def _encode(p: dict[str, Tensor], x: Tensor, state: dict[str, Tensor], W: Tensor) -> Tensor:
        """``sae_in @ W`` ``[*lead, B, n]`` with sae-lens's ``process_sae_in``: ``sae_in = x - b_dec *
        apply_b_dec_to_input`` (the config bool: exactly b_dec or 0, gradient 1 or 0)."""
        b_dec = p["b_dec"]
        return _CenteredMatmul.apply(x.to(b_dec.dtype), _row(b_dec * _col(state["apply_b_dec"], b_dec)), W)

    @staticmethod
    def _mse(p: dict[str, Tensor], feature_acts: Tensor, x: Tensor) -> Tensor:
        """sae-lens ``decode`` + ``mse_loss(...).sum(-1).mean()``: ``[*lead]``."""
        sae_out = feature_acts @ p["W_dec"] + _row(p["b_dec"])
        return (sae_out - x.to(sae_out.dtype)).pow(2).sum(dim=-1).mean(dim=-1)  # F.mse_loss(reduction="none")

    @staticmethod
    def _out(mse: Tensor, aux: dict[str, Tensor], feature_acts: Tensor) -> BatchedOut:
        """Total and loss dict in sae-lens's order (mse, then aux terms in insertion order)."""
        total = mse
        for v in aux.values():
            total = total + v
        with torch.no_grad():
            fire = (feature_acts != 0).sum(dim=-2).to(feature_acts.dtype)
        return BatchedOut(total=total, losses={"mse_loss": mse, **aux}, fire_counts=fire)


class StandardBatched(_PenaltyBatched):
    """sae-lens ``StandardTrainingSAE``: ``relu(sae_in @ W_enc + b_enc)``, loss
    ``mse + mean_b(l1_coef * || f_b * |W_dec rows| ||_p)``."""

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec")
    arch = "standard"
    structural = ("lp_norm",)

    def init_state(self, saes: list[Any]) -> dict[str, Tensor]:
        state = super().init_state(saes)
        self.lp_norm = float(_same(saes, "lp_norm", self.arch))
        return state

    def _member(self, p, x, state, coefs, dead) -> BatchedOut:  # noqa: ARG002 - no dead-latent term
        hidden_pre = self._encode(p, x, state, p["W_enc"]) + _row(p["b_enc"])  # [*lead, B, d_sae]
        W_dec_norm = _RowNorm.apply(p["W_dec"])
        if self.lp_norm == 1.0:
            feature_acts, sparsity = _ReluL1.apply(hidden_pre, W_dec_norm)  # sparsity [*lead, B]
        else:
            feature_acts = torch.relu(hidden_pre)
            sparsity = (feature_acts * _row(W_dec_norm)).norm(p=self.lp_norm, dim=-1)
        mse = self._mse(p, feature_acts, x)
        l1 = (_col(coefs["l1"], sparsity) * sparsity).mean(dim=-1)
        return self._out(mse, {"l1_loss": l1}, feature_acts)


class JumpReLUBatched(_PenaltyBatched):
    """sae-lens ``JumpReLUTrainingSAE``: ``JumpReLU(sae_in @ W_enc + b_enc, threshold)`` with its
    straight-through estimators; sparsity loss ``step`` (L0), ``quadratic`` (``2/T (L0 - T)^2``) or
    ``tanh``; optional pre-activation loss on dead latents.

    Like sae-lens's ``training_forward_pass``, ``loss`` first clamps ``p["threshold"]`` to >= 0 in
    place (no grad): the projection sae-lens applies before every forward pass.
    """

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
    arch = "jumprelu"
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
        from sae_lens.saes.jumprelu_sae import JumpReLU, Step

        hidden_pre = self._encode(p, x, state, p["W_enc"]) + _row(p["b_enc"])  # [*lead, B, d_sae]
        # sae-lens's functions sum the threshold gradient over dim 0: they get [B, *lead, d_sae]
        # views, one per use as in sae-lens (the gradients reach hidden_pre separately and add up in
        # sae-lens's order). The threshold is float32 whatever the SAE dtype (sae-lens) and cast
        # separately in encode and in the aux loss, so each path's gradient is rounded back to
        # float32 on its own before they add up: two casts here too.
        feature_acts = JumpReLU.apply(hidden_pre.movedim(-2, 0), p["threshold"].to(hidden_pre.dtype),
                                      self.bandwidth, self.ste_to_input).movedim(0, -2)
        mse = self._mse(p, feature_acts, x)
        threshold = p["threshold"].to(hidden_pre.dtype)  # [*lead, d_sae]
        W_dec_norm = _RowNorm.apply(p["W_dec"])  # [*lead, d_sae]
        if self.mode in ("step", "quadratic"):
            # summed in the [*lead, B, d_sae] layout: a contiguous [*lead, B] keeps the batch mean's order
            l0 = torch.sum(Step.apply(hidden_pre.movedim(-2, 0), threshold, self.bandwidth,
                                      self.ste_to_input).movedim(0, -2), dim=-1)
            if self.mode == "quadratic":
                target = state["target_l0"]
                per_item = _col(2 / target, l0) * (l0 - _col(target, l0)) ** 2
            else:
                per_item = l0
        elif self.mode == "tanh":
            per_item = torch.tanh(_col(state["tanh_scale"], hidden_pre).unsqueeze(-1) * feature_acts
                                  * _row(W_dec_norm)).sum(dim=-1)
        else:  # pragma: no cover - supports() refuses other modes
            raise ConfigError(f"batched jumprelu: sparsity loss mode {self.mode!r}")
        losses = {"l0_loss": (_col(coefs["l0"], per_item) * per_item).mean(dim=-1)}
        if self.pre_act:
            losses["pre_act_loss"] = self._pre_act(state, threshold, hidden_pre, dead, W_dec_norm)
        return self._out(mse, losses, feature_acts)

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
    gradient terms then add up in another order: equal to rounding, not bit for bit).
    """

    param_names = ("W_enc", "W_dec", "b_gate", "b_mag", "r_mag", "b_dec")
    arch = "gated"

    def _member(self, p, x, state, coefs, dead) -> BatchedOut:  # noqa: ARG002 - no dead-latent term
        W_enc = p["W_enc"]
        pi_gate = self._encode(p, x, state, W_enc) + _row(p["b_gate"])  # [*lead, B, d_sae]
        active = (pi_gate > 0).to(pi_gate.dtype)
        mag_pre = self._encode(p, x, state, W_enc * _row(p["r_mag"].exp())) + _row(p["b_mag"])
        feature_acts = active * torch.relu(mag_pre)
        mse = self._mse(p, feature_acts, x)
        pi_gate_act = torch.relu(pi_gate)
        W_dec_norm = _row(_RowNorm.apply(p["W_dec"]))
        l1 = _col(coefs["l1"], pi_gate_act).squeeze(-1) * torch.sum(pi_gate_act * W_dec_norm, dim=-1).mean(dim=-1)
        via_gate = pi_gate_act @ p["W_dec"] + _row(p["b_dec"])
        aux = (via_gate - x.to(via_gate.dtype)).pow(2).sum(dim=-1).mean(dim=-1)
        return self._out(mse, {"l1_loss": l1, "auxiliary_reconstruction_loss": aux}, feature_acts)
