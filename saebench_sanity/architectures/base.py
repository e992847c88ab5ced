"""The Architecture contract.

An architecture builds a sae-lens ``TrainingSAE`` for ``(d_in, d_sae, params)``. Because the
object *is* a sae-lens SAE, its forward pass, losses and on-disk format are SAELens's own:
``sae.save_model(path)`` and ``SAE.load_from_disk(path)`` round-trip.

``roles`` maps each parameter name of the built SAE to what it is, so training modes can say
"freeze the encoder directions" without knowing the architecture:

==================  ==========================================================================
role                meaning
==================  ==========================================================================
``encoder``         encoder direction matrix ``W_enc [d_in, d_sae]``
``decoder``         decoder direction matrix ``W_dec [d_sae, d_in]``
``encoder_bias``    per-latent pre-activation bias (``b_enc``, ``b_gate``, ``b_mag``)
``decoder_bias``    ``b_dec [d_in]``
``threshold``       per-latent activation threshold (JumpReLU ``threshold``)
``scale``           per-latent scale (Gated ``r_mag``)
==================  ==========================================================================

Everything the harness does differently per architecture is declared on the spec, never looked
up by name: how a target L0 maps onto its parameters (``target_l0_params``), which sae-lens
config field warms its sparsity penalty up (``sparsity_warm_up_param``), which sae-lens
coefficients the matched-L0 controller may scale (``sparsity_coefficients``) and what runs on the
SAE after training (``calibration``). The built-ins (``saebench_sanity.builtin.architectures``)
declare them exactly as a plugin would; ``architectures.build.SaeLensArchitecture`` is the
factory for anything in sae-lens's own architecture registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from saebench_sanity.errors import PluginError
from saebench_sanity.spec import Spec, resolve_ref

ROLES = ("encoder", "decoder", "encoder_bias", "decoder_bias", "threshold", "scale")


@dataclass(frozen=True)
class ArchitectureSpec(Spec):
    """Registered SAE architecture.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(d_in, d_sae, seed, **params)`` returns a
            sae-lens ``TrainingSAE`` on CPU, float32, initialised deterministically from ``seed``.
        params: default hyper-parameters (e.g. ``{"k": 20}``), overridable per run.
        roles: parameter name -> role (see module docstring); every ``nn.Parameter`` of the
            built SAE must appear.
        sparsity_param: the name of the hyper-parameter that sets sparsity (``k``, ``l1_coefficient``,
            ``target_l0`` ...), so a run config can set a target L0 uniformly.
        sae_lens_architecture: the ``architecture()`` string sae-lens records in ``cfg.json``.
        target_l0_params: callable or ``"module:attr"``; ``target_l0_params(T)`` returns the
            parameters that make the SAE aim at ``T`` active latents per sample (``{"k": T}``
            for TopK, ``architectures.sparsity.k_from_target_l0``), merged over ``params`` and
            under the user's explicit parameters. None: a target L0 sets nothing (an L1
            penalty), unless ``sparsity_param`` is ``"k"`` or ``"target_l0"`` (then it is T).
        sparsity_warm_up_param: the sae-lens config field that warms the sparsity penalty up
            over its first steps (``l1_warm_up_steps``, ``l0_warm_up_steps``); the run's
            ``training.sparsity_warm_up_steps`` sets it unless the user set it. "": none.
        sparsity_coefficients: names of the SAE's ``get_coefficients()`` entries that set its
            sparsity penalty (``("l1",)``, ``("l0",)``); with ``training.match_l0`` and a
            target L0 the matched-L0 controller scales them. Empty: L0 is not steered (TopK).
        calibration: callable or ``"module:attr"``; ``calibration(sae, sample_acts, batch_size)``
            runs after training and on 0-step cells, before the mode's invariants are checked,
            with ``sample_acts [n, d_in]`` the cell's sample activations and ``batch_size``
            its training batch size (BatchTopK: set the inference threshold,
            ``architectures.batchtopk.calibrate_threshold``). It must not change parameters.
    """

    factory: "Callable[..., Any] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    sparsity_param: str = ""
    sae_lens_architecture: str = ""
    target_l0_params: "Callable[[float], dict[str, Any]] | str | None" = None
    sparsity_warm_up_param: str = ""
    sparsity_coefficients: tuple[str, ...] = ()
    calibration: "Callable[..., Any] | str | None" = None

    kind: str = field(default="architecture", init=False, repr=False, compare=False)

    def build(self, d_in: int, d_sae: int, seed: int, **overrides: Any) -> Any:
        fn = resolve_ref(self.factory, what=f"architecture {self.name!r}")
        return fn(d_in=d_in, d_sae=d_sae, seed=seed, **{**self.params, **overrides})

    @property
    def targets_l0(self) -> bool:
        """True if a target L0 sets this architecture's sparsity (see ``target_l0_params``)."""
        return self.target_l0_params is not None or self.sparsity_param in ("k", "target_l0")

    def params_for_target_l0(self, target_l0: float) -> dict[str, Any]:
        """The parameters that aim this architecture at ``target_l0`` active latents per sample
        (``{}`` when its sparsity does not target an L0)."""
        if self.target_l0_params is not None:
            fn = resolve_ref(self.target_l0_params, what=f"architecture {self.name!r} target_l0_params")
            out = fn(target_l0)
            if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
                raise PluginError(f"architecture {self.name!r}: target_l0_params({target_l0}) returned "
                                  f"{type(out).__name__}, not a dict of parameter names to values")
            return dict(out)
        if self.sparsity_param in ("k", "target_l0"):
            return {self.sparsity_param: target_l0}
        return {}

    def calibrate(self, sae: Any, sample_acts: Any, batch_size: int) -> None:
        """Run the declared ``calibration`` on ``sae`` (nothing when none is declared)."""
        if self.calibration is not None:
            fn = resolve_ref(self.calibration, what=f"architecture {self.name!r} calibration")
            fn(sae, sample_acts, int(batch_size))

    def declaration_problems(self, sae: Any) -> list[str]:
        """What this spec declares that ``sae`` (built by it) contradicts, one line each; empty
        when every declaration can take effect. For the conformance kit and plugin tests: a
        mis-declared field would otherwise do nothing silently (a warm-up nobody reads, a
        coefficient the controller cannot find, a target-L0 parameter the config lacks)."""
        out: list[str] = []
        cfg = getattr(sae, "cfg", None)
        if self.sparsity_warm_up_param and not hasattr(cfg, self.sparsity_warm_up_param):
            out.append(f"sparsity_warm_up_param {self.sparsity_warm_up_param!r} is not a field of the SAE's config")
        if self.sparsity_coefficients:
            try:
                have = tuple(sae.get_coefficients())
            except (AttributeError, NotImplementedError):
                have = ()
            missing = [n for n in self.sparsity_coefficients if n not in have]
            if missing:
                out.append(f"sparsity_coefficients {missing} are not among the SAE's get_coefficients() {list(have)}")
        if self.targets_l0:
            try:
                keys = sorted(self.params_for_target_l0(1))
            except Exception as exc:  # noqa: BLE001 - reported as the plugin's problem
                out.append(f"target_l0_params(1) raised {type(exc).__name__}: {exc}")
            else:
                unknown = [k for k in keys if not hasattr(cfg, k) and k not in self.params]
                if unknown:
                    out.append(f"target_l0_params sets {unknown}, which the SAE's config does not have")
        if self.calibration is not None:
            try:
                resolve_ref(self.calibration, what=f"architecture {self.name!r} calibration")
            except PluginError as exc:
                out.append(str(exc))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.params, "sae_lens_architecture": self.sae_lens_architecture}
