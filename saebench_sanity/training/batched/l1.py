"""Batched training math of sae-lens's penalty-based SAEs over a cohort of M members:
``StandardTrainingSAE`` (ReLU + decoder-norm-weighted Lp penalty), ``JumpReLUTrainingSAE``
(learned thresholds, straight-through L0 / tanh / quadratic-target penalty, optional pre-act loss)
and ``GatedTrainingSAE`` (gate and magnitude paths, L1 on the gate, auxiliary gate reconstruction).

Each ``loss`` is its class's ``training_forward_pass`` with a leading member dimension: every
member's parameters are a slice ``p[name][i]``, the batch ``x [B, d_in]`` is shared, activations
are ``[M, B, d_sae]``. The operations and their order are sae-lens's own (``torch.matmul`` on the
stacked tensors runs the same per-member GEMM as sae-lens's 2-D ``@``), so in float64 each member's
loss and gradients equal its solo sae-lens step to rounding (tests/test_batched_l1.py); JumpReLU uses
sae-lens's own ``Step`` / ``JumpReLU`` autograd functions on a ``[B, M, d_sae]`` view, so the
straight-through gradients are sae-lens's by construction.

Config that must be the same for the whole cohort (it changes the program, not a number):
``lp_norm`` (Standard), ``jumprelu_sparsity_loss_mode``, ``jumprelu_bandwidth``,
``jumprelu_ste_to_input`` and whether ``pre_act_loss_coefficient`` is set (JumpReLU). Per-member
numbers ride in the state: ``apply_b_dec_to_input``, ``target_l0``, ``jumprelu_tanh_scale``,
``pre_act_loss_coefficient``; the sparsity coefficients come per member from ``StepCtx``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from saebench_sanity.errors import ConfigError
from saebench_sanity.training.batched.base import BatchedOut, StepCtx

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

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


def _per_member(saes: list[Any], values: list[float]) -> "Tensor":
    """``[M]`` float64 tensor of per-member numbers on the saes' device (cast to the compute
    dtype at use, as sae-lens's Python-float arithmetic does)."""
    import torch

    return torch.tensor(values, dtype=torch.float64, device=saes[0].W_enc.device)


def _col(t: "Tensor", like: "Tensor") -> "Tensor":
    """``[M]`` -> ``[M, 1]`` in ``like``'s dtype (broadcasts over the batch)."""
    return t.to(like.dtype).unsqueeze(1)


class _PenaltyBatched:
    """Shared parts of the three archs: stacking names, support checks, state, write-back."""

    param_names: tuple[str, ...] = ()
    arch = "?"

    def supports(self, sae: Any) -> bool:
        return _stock(sae) and all(isinstance(getattr(sae, n, None), _parameter_type()) for n in self.param_names)

    def init_state(self, saes: list[Any]) -> "dict[str, Tensor]":
        if not saes:
            raise ConfigError(f"batched {self.arch}: a cohort needs at least one member")
        for field in ("d_in", "d_sae"):
            _same(saes, field, self.arch)
        return {"apply_b_dec": _per_member(saes, [1.0 if s.cfg.apply_b_dec_to_input else 0.0 for s in saes])}

    def update_state(self, state: "dict[str, Tensor]", p: "dict[str, Tensor]", x: "Tensor", ctx: StepCtx) -> None:
        """Nothing: these classes keep no running state (JumpReLU's threshold clamp happens in ``loss``)."""

    def write_back(self, p: "dict[str, Tensor]", state: "dict[str, Tensor]", saes: list[Any]) -> None:
        import torch

        with torch.no_grad():
            for i, sae in enumerate(saes):
                for name in self.param_names:
                    dst = getattr(sae, name)
                    dst.data.copy_(p[name][i].detach().to(dtype=dst.dtype, device=dst.device))

    @staticmethod
    def _sae_in(p: "dict[str, Tensor]", x: "Tensor", state: "dict[str, Tensor]") -> "Tensor":
        """``[M, B, d_in]``: sae-lens ``process_sae_in``: ``x - b_dec * apply_b_dec_to_input``."""
        b_dec = p["b_dec"]
        x = x.to(b_dec.dtype)
        # sae-lens multiplies b_dec by the config bool (exactly b_dec or 0, gradient 1 or 0)
        return x - (b_dec * _col(state["apply_b_dec"], b_dec)).unsqueeze(1)

    @staticmethod
    def _decode_mse(p: "dict[str, Tensor]", feature_acts: "Tensor", x: "Tensor") -> "tuple[Tensor, Tensor]":
        """sae-lens ``decode`` + ``mse_loss``: ``(sae_out [M, B, d_in], mse [M])``."""
        sae_out = torch_matmul(feature_acts, p["W_dec"]) + p["b_dec"].unsqueeze(1)
        per_item = (sae_out - x.to(sae_out.dtype)).pow(2)  # F.mse_loss(reduction="none")
        return sae_out, per_item.sum(dim=-1).mean(dim=-1)

    @staticmethod
    def _out(mse: "Tensor", aux: "dict[str, Tensor]", feature_acts: "Tensor") -> BatchedOut:
        """Total and loss dict in sae-lens's order (mse, then aux terms in insertion order)."""
        import torch

        total = mse
        for v in aux.values():
            total = total + v
        with torch.no_grad():
            fire = (feature_acts != 0).sum(dim=1).to(feature_acts.dtype)
        return BatchedOut(total=total, losses={"mse_loss": mse, **aux}, fire_counts=fire)


def _parameter_type() -> type:
    import torch

    return torch.nn.Parameter


def torch_matmul(a: "Tensor", b: "Tensor") -> "Tensor":
    """``[M, B, k] @ [M, k, n]`` (or ``[B, k]`` broadcast): one batched GEMM, per member the same
    kernel sae-lens's 2-D ``@`` runs."""
    import torch

    return torch.matmul(a, b)


class StandardBatched(_PenaltyBatched):
    """sae-lens ``StandardTrainingSAE``: ``relu(sae_in @ W_enc + b_enc)``, loss
    ``mse + mean_b(l1_coef * || f_b * |W_dec rows| ||_p)``."""

    param_names = ("W_enc", "W_dec", "b_enc", "b_dec")
    arch = "standard"

    def init_state(self, saes: list[Any]) -> "dict[str, Tensor]":
        state = super().init_state(saes)
        self.lp_norm = float(_same(saes, "lp_norm", self.arch))
        return state

    def loss(self, p: "dict[str, Tensor]", x: "Tensor", state: "dict[str, Tensor]", ctx: StepCtx) -> BatchedOut:
        import torch

        sae_in = self._sae_in(p, x, state)
        hidden_pre = torch_matmul(sae_in, p["W_enc"]) + p["b_enc"].unsqueeze(1)  # [M, B, d_sae]
        feature_acts = torch.relu(hidden_pre)
        _, mse = self._decode_mse(p, feature_acts, x)
        weighted = feature_acts * p["W_dec"].norm(dim=2).unsqueeze(1)
        sparsity = weighted.norm(p=self.lp_norm, dim=-1)  # [M, B]
        l1 = (_col(ctx.coefficients["l1"], sparsity) * sparsity).mean(dim=-1)
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

    def supports(self, sae: Any) -> bool:
        return super().supports(sae) and sae.cfg.jumprelu_sparsity_loss_mode in ("step", "tanh", "quadratic")

    def init_state(self, saes: list[Any]) -> "dict[str, Tensor]":
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

    def loss(self, p: "dict[str, Tensor]", x: "Tensor", state: "dict[str, Tensor]", ctx: StepCtx) -> BatchedOut:
        import torch
        from sae_lens.saes.jumprelu_sae import JumpReLU, Step

        with torch.no_grad():
            p["threshold"].data.clamp_(min=0.0)
        sae_in = self._sae_in(p, x, state)
        hidden_pre = torch_matmul(sae_in, p["W_enc"]) + p["b_enc"].unsqueeze(1)  # [M, B, d_sae]
        # sae-lens's functions sum the threshold gradient over dim 0: give them [B, M, d_sae] views
        # (one view per use, as sae-lens feeds hidden_pre to each: the gradients reach hidden_pre
        # separately and add up in sae-lens's order)
        # the threshold is float32 whatever the SAE dtype (sae-lens); sae-lens casts it separately
        # in encode and in the aux loss, so each path's gradient is rounded back to float32 on its
        # own before they add up: two casts here too
        feature_acts = JumpReLU.apply(hidden_pre.transpose(0, 1), p["threshold"].to(hidden_pre.dtype), self.bandwidth,
                                      self.ste_to_input).transpose(0, 1)
        _, mse = self._decode_mse(p, feature_acts, x)
        threshold = p["threshold"].to(hidden_pre.dtype)  # [M, d_sae]
        W_dec_norm = p["W_dec"].norm(dim=2)  # [M, d_sae]
        coef = _col(ctx.coefficients["l0"], hidden_pre)
        if self.mode in ("step", "quadratic"):
            # summed in the [M, B, d_sae] layout: a contiguous [M, B] keeps the batch mean's order
            l0 = torch.sum(Step.apply(hidden_pre.transpose(0, 1), threshold, self.bandwidth,
                                      self.ste_to_input).transpose(0, 1), dim=-1)
            if self.mode == "quadratic":
                target = state["target_l0"]
                per_item = _col(2 / target, l0) * (l0 - _col(target, l0)) ** 2
            else:
                per_item = l0
        elif self.mode == "tanh":
            per_item = torch.tanh(_col(state["tanh_scale"], hidden_pre).unsqueeze(2) * feature_acts
                                  * W_dec_norm.unsqueeze(1)).sum(dim=-1)
        else:  # pragma: no cover - supports() refuses other modes
            raise ConfigError(f"batched jumprelu: sparsity loss mode {self.mode!r}")
        losses = {"l0_loss": (coef * per_item).mean(dim=-1)}
        if self.pre_act:
            losses["pre_act_loss"] = self._pre_act(state, threshold, hidden_pre, ctx.dead_neuron_mask, W_dec_norm)
        return self._out(mse, losses, feature_acts)

    @staticmethod
    def _pre_act(state: "dict[str, Tensor]", threshold: "Tensor", hidden_pre: "Tensor",
                 dead: "Tensor | None", W_dec_norm: "Tensor") -> "Tensor":
        """sae-lens ``calculate_pre_act_loss`` per member: ``coef * mean_b sum_j relu(t_j - h_bj) *
        dead_j * |W_dec_j|``; a member with no dead latent gets sae-lens's constant 0 (here the same
        expression with an all-False mask: 0 with zero gradient)."""
        if dead is None:
            return hidden_pre.new_zeros(hidden_pre.shape[0])
        per_item = ((threshold.unsqueeze(1) - hidden_pre).relu() * dead.unsqueeze(1)
                    * W_dec_norm.unsqueeze(1)).sum(dim=-1)
        return _col(state["pre_act_coef"], per_item).squeeze(1) * per_item.mean(dim=-1)


class GatedBatched(_PenaltyBatched):
    """sae-lens ``GatedTrainingSAE``: gate ``1[sae_in @ W_enc + b_gate > 0]`` times magnitude
    ``relu(sae_in @ (W_enc * exp(r_mag)) + b_mag)``; loss ``mse + l1_coef * mean_b sum_j
    relu(pi_gate)_bj |W_dec_j| + || relu(pi_gate) @ W_dec + b_dec - x ||^2``.

    sae-lens computes the gate pre-activation ``pi_gate`` twice (in ``encode_with_hidden_pre``,
    where only its sign is used, and again in ``calculate_aux_loss``) from the same expression;
    here it is computed once: identical values, and the sign path carries no gradient.
    """

    param_names = ("W_enc", "W_dec", "b_gate", "b_mag", "r_mag", "b_dec")
    arch = "gated"

    def loss(self, p: "dict[str, Tensor]", x: "Tensor", state: "dict[str, Tensor]", ctx: StepCtx) -> BatchedOut:
        import torch

        W_enc = p["W_enc"]
        sae_in = self._sae_in(p, x, state)
        pi_gate = torch_matmul(sae_in, W_enc) + p["b_gate"].unsqueeze(1)  # [M, B, d_sae]
        active = (pi_gate > 0).to(pi_gate.dtype)
        mag_pre = torch_matmul(sae_in, W_enc * p["r_mag"].exp().unsqueeze(1)) + p["b_mag"].unsqueeze(1)
        feature_acts = active * torch.relu(mag_pre)
        _, mse = self._decode_mse(p, feature_acts, x)
        pi_gate_act = torch.relu(pi_gate)
        W_dec_norm = p["W_dec"].norm(dim=2).unsqueeze(1)  # [M, 1, d_sae]
        l1 = _col(ctx.coefficients["l1"], pi_gate_act).squeeze(1) * torch.sum(pi_gate_act * W_dec_norm, dim=-1).mean(dim=-1)
        via_gate = torch_matmul(pi_gate_act, p["W_dec"]) + p["b_dec"].unsqueeze(1)
        aux = (via_gate - x.to(via_gate.dtype)).pow(2).sum(dim=-1).mean(dim=-1)
        return self._out(mse, {"l1_loss": l1, "auxiliary_reconstruction_loss": aux}, feature_acts)
