"""The training modes: the trained SAE, the study's random baselines, and the untrained floor.

Korznikov et al. (2026) compare every trained SAE with baselines that share its initialisation,
data order and hyper-parameters but keep some directions random (Korznikov et al. 2026; docs/training-modes.md):

* ``frozen_decoder``: decoder rows random and frozen; encoder, biases, thresholds train.
* ``soft_frozen_decoder``: decoder rows random at init and, after *every* optimizer step,
  projected back to cosine >= ``min_cos`` with their own initial direction; the encoder is free.
* ``frozen_encoder``: encoder columns random and frozen; decoder, thresholds, biases, scales train.

Random directions have unit norm, drawn ``iso`` (uniform on the sphere) or ``cov`` (Gaussian with
the covariance of sample activations, then normalised). Unit norm matters: sae-lens initialises
decoder rows at norm 0.1 (``decoder_init_norm``), which a frozen decoder could never undo. The
encoder of every baseline starts tied to the decoder (``W_enc = W_dec.T``, as sae-lens does), so
the baseline starts from the same kind of point as the trained SAE. These fairness helpers (tied
init, least-squares output scale, centring) live on the public base class
``RandomDirectionsBaseline``, which plugin baselines subclass too; every tensor is addressed
through the architecture's ``roles``, never by attribute name. See docs/training-modes.md.

Randomness comes from the global torch RNG, which ``training.trainer`` seeds per cell, so the
same seed gives the same random directions in every mode (frozen and soft-frozen decoders of a
seed start from the same rows).
"""

from __future__ import annotations

import math
from typing import Any

from saebench_sanity.architectures.base import ROLES
from saebench_sanity.errors import ConfigError, DataError, ModeInvariantError
from saebench_sanity.training.base import TrainingMode

INITS = ("iso", "cov")
BIAS_ROLES = ("encoder_bias", "decoder_bias")
#: Attribute set on a prepared SAE holding the mode's reference tensors (never saved to disk).
STATE_ATTR = "saebench_mode_state"


# -- pure helpers ---------------------------------------------------------------------------------
def random_directions(n: int, d_in: int, init: str, sample_acts: Any = None) -> Any:
    """``[n, d_in]`` unit-norm random rows from the global torch RNG.

    ``iso``: standard Gaussian rows, normalised (uniform on the unit sphere).
    ``cov``: rows ~ N(0, Sigma) with Sigma the covariance of ``sample_acts`` ``[m, d_in]`` (mean
    removed: the mean is b_dec's job), then normalised. Sampled as ``g @ (V sqrt(Lambda))^T`` from
    Sigma's eigendecomposition (float64), so no ``[n, m]`` matrix is ever formed.
    """
    import torch

    g = torch.randn(n, d_in, dtype=torch.float64)
    if init == "cov":
        if sample_acts is None or sample_acts.ndim != 2 or sample_acts.shape[1] != d_in or sample_acts.shape[0] < 2:
            raise DataError(f"cov init needs sample activations [n >= 2, {d_in}]; got "
                            f"{None if sample_acts is None else tuple(sample_acts.shape)}")
        x = sample_acts.to(torch.float64)
        x = x - x.mean(0, keepdim=True)
        cov = x.T @ x / (x.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        g = g @ (evecs * evals.clamp(min=0).sqrt()).T
    elif init != "iso":
        raise ConfigError(f"init = {init!r}; use 'iso' or 'cov'")
    norms = g.norm(dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise DataError("cov init: sample activations have zero variance; check the activation set")
    return (g / norms).to(torch.float32)


def project_to_cone(W: Any, D0: Any, min_cos: float) -> Any:
    """Rows of ``W`` ``[n, d]`` moved into the cone ``cos(w_i, d0_i) >= min_cos`` around the
    unit rows of ``D0`` ``[n, d]``, keeping each row's norm.

    A row already inside is unchanged. A row outside gets the direction of its closest point on
    the cone: rotate it, in the plane spanned by ``d0_i`` and the row, to angle ``acos(min_cos)``
    from ``d0_i``: ``u = min_cos * d0 + sqrt(1 - min_cos^2) * p / |p|`` where ``p`` is the row's
    part orthogonal to ``d0``; the result is ``|w| * u``. (The Euclidean closest point is
    ``(w . u) u``; we keep ``|w|`` so the projection never shrinks a decoder row, only turns it.)
    A row exactly opposite ``d0`` (``p = 0``) becomes ``|w| * d0``. Computed in float64 by
    :class:`ConeProjection` (which keeps ``D0``'s float64 copy for a projection applied every
    step). Hand-written: neither torch nor sae-lens has a cone projection.
    """
    return ConeProjection(D0, min_cos)(W)


class ConeProjection:
    """:func:`project_to_cone` around fixed directions ``D0`` ``[n, d]``, for use after every step:
    ``D0`` in float64 and ``min_cos * D0`` are computed once, and the float64 arithmetic runs in
    one reused buffer (the formula of the docstring above, operation for operation, so the rows
    are the same bit for bit as a fresh evaluation: a test). ``rows`` (a LongTensor) projects
    ``W`` ``[len(rows), d]`` against those rows of ``D0`` only. ``host_checks=False`` skips the
    host reads (the early exit when no row is outside, and the ``p = 0`` check), for devices
    where a read per step would stall; the result is the same.

    A soft-frozen decoder's rows sit on the cone's edge once trained for a while, and a step
    pushes most of them out again, so most of the matrix goes through it every step; speed
    against the formula evaluated afresh: docs/performance.md."""

    def __init__(self, D0: Any, min_cos: float) -> None:
        import torch

        self.min_cos = float(min_cos)
        self.s = math.sqrt(max(0.0, 1.0 - self.min_cos * self.min_cos))
        self.d0 = D0.to(torch.float64)
        self.md0 = self.min_cos * self.d0

    def __call__(self, W: Any, rows: Any = None, *, host_checks: bool = True) -> Any:
        import torch

        d0, md0 = (self.d0, self.md0) if rows is None else (self.d0.index_select(0, rows), self.md0.index_select(0, rows))
        w = W.to(torch.float64)
        norm = w.norm(dim=1, keepdim=True)
        buf = torch.mul(w, d0)
        a = buf.sum(dim=1, keepdim=True)
        outside = (a / norm.clamp(min=1e-30)).squeeze(1) < self.min_cos
        if host_checks and not bool(outside.any()):
            return W
        torch.sub(w, torch.mul(d0, a, out=buf), out=buf)  # p = w - a * d0
        pn = buf.norm(dim=1, keepdim=True)
        buf.mul_(self.s).div_(pn.clamp(min=1e-30)).add_(md0)  # u = min_cos * d0 + s * p / |p| (exact: + commutes)
        if not host_checks or not bool((pn > 1e-30).all()):
            buf = torch.where(pn > 1e-30, buf, d0)
        buf.mul_(norm.clamp(min=1e-8))  # |w| * u
        if not host_checks or not bool(outside.all()):
            buf = torch.where(outside.unsqueeze(1), buf, w)
        return buf.to(W.dtype)


def row_cosines(W: Any, D0: Any) -> Any:
    """``[n]`` cosine of each row of ``W`` with the same row of ``D0`` (float64)."""
    import torch

    w, d0 = W.to(torch.float64), D0.to(torch.float64)
    return (w * d0).sum(1) / (w.norm(dim=1) * d0.norm(dim=1)).clamp(min=1e-30)


def fit_output_scale(sae: Any, sample_acts: Any, max_rows: int = 4096, roles: dict[str, str] | None = None) -> float:
    """Least-squares scalar ``alpha`` for the SAE's latent output at its current weights:
    ``argmin_a sum ||(x - b_dec) - a * (sae(x) - b_dec)||^2`` over up to ``max_rows`` sample rows
    ``[n, d_in]`` (training-mode forward, so BatchTopK selects per batch). ``b_dec`` is the
    tensor with role ``decoder_bias`` in ``roles`` (0 if none; ``sae.b_dec`` when ``roles`` is
    None). Returns 1.0 when undefined (no latent fires, or a non-positive / non-finite fit)."""
    import torch

    x = sample_acts[:max_rows].to(torch.float32)
    with torch.no_grad():
        was = sae.training
        sae.train()
        out = sae(x)
        sae.train(was)
        if roles is None:
            b = sae.b_dec.detach()
        else:
            biases = _params_with_roles(sae, roles, ("decoder_bias",))
            b = biases[0].detach() if biases else torch.zeros((), dtype=out.dtype)
        r, t = (out - b).double(), (x - b).double()
        rr = float((r * r).sum())
        alpha = float((t * r).sum()) / rr if rr > 0 else 1.0
    return alpha if math.isfinite(alpha) and alpha > 0 else 1.0


def _scale_output(sae: Any, roles: dict[str, str], alpha: float, side: str) -> None:
    """Multiply the trainable side of a random SAE by ``alpha`` so its output scale is the
    least-squares one, without changing which latents fire: ``side = "encoder"`` scales the
    encoder matrix, every encoder bias and the JumpReLU threshold (selection is invariant to a
    common positive scale); ``side = "decoder"`` scales the decoder rows (for SAEs whose decoder
    norm is the output scale, i.e. not rescaled by it)."""
    import torch

    wanted = ("encoder", "encoder_bias", "threshold") if side == "encoder" else ("decoder",)
    with torch.no_grad():
        for p in _params_with_roles(sae, roles, wanted):
            p.data.mul_(alpha)


# -- mode machinery -------------------------------------------------------------------------------
def _param(sae: Any, roles: dict[str, str], role: str, mode: str) -> tuple[str, Any]:
    names = [n for n, r in roles.items() if r == role]
    if len(names) != 1:
        raise ConfigError(f"training mode {mode!r} needs exactly one parameter with role {role!r}; "
                          f"the architecture declares {names or 'none'}")
    return names[0], getattr(sae, names[0])


def _params_with_roles(sae: Any, roles: dict[str, str], wanted: tuple[str, ...]) -> list[Any]:
    return [getattr(sae, n) for n, r in roles.items() if r in wanted]


def _freeze(sae: Any, roles: dict[str, str], frozen: tuple[str, ...]) -> None:
    for p in _params_with_roles(sae, roles, frozen):
        p.requires_grad_(False)


def _set_to_mean(sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
    """Every ``decoder_bias`` tensor ``[d_in]`` := the mean of ``sample_acts`` ``[n, d_in]`` (float64 sum)."""
    import torch

    for p in _params_with_roles(sae, roles, ("decoder_bias",)):
        with torch.no_grad():
            p.data.copy_(sample_acts.to(torch.float64).mean(0).to(p.dtype))


class _Mode(TrainingMode):
    """Validates params against ``DEFAULTS`` (unknown or ill-typed -> ConfigError)."""

    name = "mode"
    DEFAULTS: dict[str, Any] = {}
    #: roles whose tensors train but are projected after every step (docs / inventory).
    constrained_roles: tuple[str, ...] = ()

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.DEFAULTS))
        if unknown:
            known = ", ".join(sorted(self.DEFAULTS)) or "(none)"
            raise ConfigError(f"training mode {self.name!r}: unknown parameter {unknown[0]!r}; known: {known}")
        merged = {**self.DEFAULTS, **params}
        for key, value in merged.items():
            self._validate(key, value)
        super().__init__(**merged)

    def _validate(self, key: str, value: Any) -> None:
        where = f"training mode {self.name!r}: {key} = {value!r}"
        if key == "init" and value not in self._inits():
            raise ConfigError(f"{where}; use one of {', '.join(self._inits())}")
        if key in ("train_biases", "fit_scale") and not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        if key == "min_cos" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                 or not math.isfinite(value) or not 0 < value < 1):
            raise ConfigError(f"{where} must be a number in (0, 1), e.g. 0.8")
        if key == "b_dec_init" and value not in ("mean", "zeros"):
            raise ConfigError(f"{where}; use 'mean' or 'zeros'")

    def _inits(self) -> tuple[str, ...]:
        return INITS

    @property
    def frozen_roles(self) -> tuple[str, ...]:  # type: ignore[override]
        return self._frozen()

    def _frozen(self) -> tuple[str, ...]:
        return ()

    def _bias_roles_frozen(self) -> tuple[str, ...]:
        return () if self.params.get("train_biases", True) else BIAS_ROLES


class Trained(_Mode):
    """Every tensor trains from sae-lens's own initialisation: the SAE under test."""

    name = "trained"


class RandomDirectionsBaseline(_Mode):
    """Base class of the random-direction baselines, built-in and plugin alike: it carries the
    fairness helpers that make a baseline start from the same kind of point as the trained SAE,
    so a verdict against it measures the directions, not a worse start.

    Parameters (``DEFAULTS``; a subclass may narrow or extend them): ``init`` (``iso`` | ``cov``,
    see ``random_directions``), ``train_biases`` (false: biases frozen, ``b_dec`` at the sample
    mean), ``fit_scale`` (true: start at the least-squares output scale, ``fit_output_scale``).

    A subclass sets ``name``, ``DEFAULTS`` and ``_frozen()`` (the roles it freezes), and writes
    ``prepare`` from the helpers, all addressing tensors through the architecture's ``roles``::

        dirs = self.init_tied(sae, roles, sample_acts)      # [d_sae, d_in] unit rows; W_enc = W_dec.T
        self.center(sae, roles, sample_acts)                # b_dec = sample mean if biases are frozen
        self.fit_scale(sae, roles, sample_acts, "encoder")  # least-squares output scale
        self.freeze(sae, roles)                             # requires_grad False on frozen_roles
        self.record(sae, roles, decoder=dirs)               # what check_frozen compares against

    and ``check`` as ``self.check_frozen(sae, "decoder")``. Other directions than random ones:
    override ``directions(n, d_in, sample_acts)`` (e.g. the example plugin's data directions).
    Randomness must come from the global torch RNG, which the trainer seeds per cell.
    """

    DEFAULTS = {"init": "iso", "train_biases": True, "fit_scale": True}
    is_baseline = True

    def directions(self, n: int, d_in: int, sample_acts: Any) -> Any:
        """``[n, d_in]`` float32 unit rows: ``random_directions`` with the ``init`` parameter."""
        return random_directions(n, d_in, self.params["init"], sample_acts)

    def init_tied(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> Any:
        """Set the decoder (role ``decoder``, ``[d_sae, d_in]``) to ``directions(d_sae, d_in,
        sample_acts)`` and the encoder (role ``encoder``, ``[d_in, d_sae]``) to its transpose, as
        sae-lens ties them at init; returns the directions ``[d_sae, d_in]``."""
        import torch

        _, W_enc = _param(sae, roles, "encoder", self.name)
        _, W_dec = _param(sae, roles, "decoder", self.name)
        d_sae, d_in = W_dec.shape
        if tuple(W_enc.shape) != (d_in, d_sae):
            raise ConfigError(f"training mode {self.name!r}: encoder {tuple(W_enc.shape)} and decoder "
                              f"{tuple(W_dec.shape)} are not [d_in, d_sae] / [d_sae, d_in]")
        dirs = self.directions(d_sae, d_in, sample_acts)
        if tuple(dirs.shape) != (d_sae, d_in):
            raise ConfigError(f"training mode {self.name!r}: directions() returned {tuple(dirs.shape)}, "
                              f"expected [{d_sae}, {d_in}]")
        with torch.no_grad():
            W_dec.data.copy_(dirs)
            W_enc.data.copy_(dirs.T)
        return dirs

    def fit_scale(self, sae: Any, roles: dict[str, str], sample_acts: Any, side: str) -> None:
        """With ``fit_scale`` (default), start from the least-squares output scale: random
        unit-norm tied rows over-reconstruct (k latents each add their projection; with ``cov``
        rows, which share the top principal directions, by orders of magnitude on a residual
        stream), so the baseline would spend its budget, or blow up, undoing its init.
        ``side = "encoder"`` scales the encoder, its biases and thresholds (which latents fire
        is unchanged); ``"decoder"`` scales the decoder rows (for a frozen encoder)."""
        if self.params.get("fit_scale", True) and sample_acts is not None:
            _scale_output(sae, roles, fit_output_scale(sae, sample_acts, roles=roles), side)

    def center(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        """With frozen biases, the decoder bias is set to the sample mean (a zero b_dec on
        uncentred activations would make the baseline a strawman)."""
        if self.params.get("train_biases", True) or sample_acts is None:
            return
        _set_to_mean(sae, roles, sample_acts)

    def freeze(self, sae: Any, roles: dict[str, str]) -> None:
        """``requires_grad_(False)`` on every tensor whose role is in ``frozen_roles``."""
        _freeze(sae, roles, self.frozen_roles)

    def record(self, sae: Any, roles: dict[str, str], **by_role: Any) -> None:
        """Remember, on the SAE (never saved to disk), the mode, the parameter name of every role
        and the reference tensors given by role (e.g. ``decoder=dirs``) for ``check_frozen``."""
        names = {role: n for n, role in roles.items()}
        state = {"mode": self.name, "tensors": names}
        state.update({role: t.clone() for role, t in by_role.items()})
        setattr(sae, STATE_ATTR, state)

    def check_frozen(self, sae: Any, role: str) -> None:
        """ModeInvariantError unless the tensor with ``role`` does not require grad and equals
        what ``record`` stored for it."""
        import torch

        state = getattr(sae, STATE_ATTR, None)
        if state is None or state.get("mode") != self.name or role not in state:
            raise ModeInvariantError(f"{self.name}: SAE was not prepared by this mode (no {role} tensor recorded)")
        pname = state["tensors"].get(role)
        W = getattr(sae, pname, None) if pname else None
        if W is None:
            raise ModeInvariantError(f"{self.name}: the SAE has no {role} tensor {pname!r}")
        if W.requires_grad:
            raise ModeInvariantError(f"{self.name}: {role} ({pname}) requires grad")
        if not torch.equal(W.detach(), state[role]):
            raise ModeInvariantError(f"{self.name}: {role} ({pname}) moved")


class FrozenDecoder(RandomDirectionsBaseline):
    """Decoder rows random (unit norm, ``init``) and frozen; the encoder starts at ``W_dec.T``
    and trains with biases, thresholds and scales (unless ``train_biases = false``)."""

    name = "frozen_decoder"
    DEFAULTS = {"init": "cov", "train_biases": True, "fit_scale": True}

    def _frozen(self) -> tuple[str, ...]:
        return ("decoder", *self._bias_roles_frozen())

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        dirs = self.init_tied(sae, roles, sample_acts)
        self.center(sae, roles, sample_acts)
        self.fit_scale(sae, roles, sample_acts, "encoder")
        self.freeze(sae, roles)
        self.record(sae, roles, decoder=dirs)

    def check(self, sae: Any) -> None:
        self.check_frozen(sae, "decoder")


class SoftFrozenDecoder(RandomDirectionsBaseline):
    """Decoder rows random at init (unit norm, ``init``) and projected back into the cone
    ``cos >= min_cos`` around their initial direction after every optimizer step (row norm
    kept, see ``project_to_cone``); the encoder and everything else train."""

    name = "soft_frozen_decoder"
    DEFAULTS = {"init": "iso", "min_cos": 0.8, "train_biases": True, "fit_scale": True}
    constrained_roles = ("decoder",)

    def _frozen(self) -> tuple[str, ...]:
        return self._bias_roles_frozen()

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        dirs = self.init_tied(sae, roles, sample_acts)
        self.center(sae, roles, sample_acts)
        self.fit_scale(sae, roles, sample_acts, "encoder")
        self.freeze(sae, roles)
        self._dec_name, _ = _param(sae, roles, "decoder", self.name)
        self._d0 = dirs.clone()
        self._cone: ConeProjection | None = None  # after_step's projection around these directions, made on first use
        self.record(sae, roles, decoder_init=self._d0)
        getattr(sae, STATE_ATTR)["min_cos"] = float(self.params["min_cos"])

    def after_step(self, sae: Any) -> None:
        import torch

        W = getattr(sae, self._dec_name)
        cone = getattr(self, "_cone", None)
        if cone is None:
            cone = self._cone = ConeProjection(self._d0, float(self.params["min_cos"]))
        with torch.no_grad():
            projected = cone(W.data)
            if projected is not W.data:
                W.data.copy_(projected)

    def check(self, sae: Any) -> None:
        state = getattr(sae, STATE_ATTR, None)
        if state is None or state.get("mode") != self.name:
            raise ModeInvariantError("soft_frozen_decoder: SAE was not prepared by this mode (no initial directions recorded)")
        cos = row_cosines(getattr(sae, state["tensors"]["decoder"]).detach(), state["decoder_init"])
        worst = float(cos.min())
        if not worst >= state["min_cos"] - 1e-5:
            raise ModeInvariantError(f"soft_frozen_decoder: a decoder row has cosine {worst:.6f} < min_cos {state['min_cos']}")


class FrozenEncoder(RandomDirectionsBaseline):
    """Encoder columns random (unit norm, ``init``) and frozen; the decoder starts at the same
    rows and trains with biases, thresholds and scales (Gated ``r_mag``).

    TopK-family SAEs get ``rescale_acts_by_decoder_norm = False``: with rescaling on, a latent's
    output magnitude is its (frozen-direction) pre-activation and the decoder norm cancels out, so
    no tensor could learn each latent's scale; with it off, the decoder row norm is that scale
    (the study: "only the activation threshold and decoder are learned")."""

    name = "frozen_encoder"
    DEFAULTS = {"init": "iso", "train_biases": True, "fit_scale": True}

    def _frozen(self) -> tuple[str, ...]:
        return ("encoder", *self._bias_roles_frozen())

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        dirs = self.init_tied(sae, roles, sample_acts)
        self.center(sae, roles, sample_acts)
        if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
            sae.cfg.rescale_acts_by_decoder_norm = False
        self.fit_scale(sae, roles, sample_acts, "decoder")
        self.freeze(sae, roles)
        self.record(sae, roles, encoder=dirs.T)

    def check(self, sae: Any) -> None:
        self.check_frozen(sae, "encoder")


class Untrained(RandomDirectionsBaseline):
    """No optimizer steps: a floor, never a verdict. ``init``: ``iso``/``cov`` unit-norm tied rows
    (``W_enc = W_dec.T``), or ``sae_lens`` (keep sae-lens's own init, decoder norm 0.1).
    ``b_dec_init``: ``mean`` (sample mean, default) or ``zeros``. BatchTopK-family thresholds are
    calibrated on sample activations by the trainer (see ``architectures.batchtopk``); JumpReLU
    SAEs with a target L0 get the threshold that gives it on the sample."""

    name = "untrained"
    trains = False
    is_baseline = False
    DEFAULTS = {"init": "iso", "b_dec_init": "mean", "fit_scale": True}

    def _inits(self) -> tuple[str, ...]:
        return (*INITS, "sae_lens")

    def _frozen(self) -> tuple[str, ...]:
        return ROLES

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        if self.params["init"] != "sae_lens":
            self.init_tied(sae, roles, sample_acts)
        if self.params["b_dec_init"] == "mean" and sample_acts is not None:
            _set_to_mean(sae, roles, sample_acts)
        self._calibrate_threshold(sae, roles, sample_acts)
        if self.params["init"] != "sae_lens":
            self.fit_scale(sae, roles, sample_acts, "encoder")
        for p in sae.parameters():
            p.requires_grad_(False)
        self.record(sae, roles)

    @staticmethod
    def _calibrate_threshold(sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        """An SAE with a ``threshold`` role and a target L0 in its config (JumpReLU's quadratic
        penalty) gets one shared threshold that gives that mean L0 on the sample, so the floor is
        compared at the trained SAE's sparsity (sae-lens's 0.01 init would fire about half of all
        latents)."""
        import torch

        target = getattr(sae.cfg, "target_l0", None)
        thresholds = _params_with_roles(sae, roles, ("threshold",))
        if not target or len(thresholds) != 1 or sample_acts is None:
            return
        d_sae = int(sae.cfg.d_sae)
        rows = max(1, min(sample_acts.shape[0], 4_000_000 // d_sae))
        with torch.no_grad():
            _, pre = sae.encode_with_hidden_pre(sample_acts[:rows])
            keep = min(pre.numel(), max(1, int(round(float(target) * rows))))
            thr = float(pre.flatten().topk(keep).values.min())
            thresholds[0].data.fill_(max(thr, 0.0))

    def check(self, sae: Any) -> None:
        if any(p.requires_grad for p in sae.parameters()):
            raise ModeInvariantError("untrained: a parameter requires grad")
