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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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
    """

    factory: "Callable[..., Any] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    sparsity_param: str = ""
    sae_lens_architecture: str = ""

    kind: str = field(default="architecture", init=False, repr=False, compare=False)

    def build(self, d_in: int, d_sae: int, seed: int, **overrides: Any) -> Any:
        fn = resolve_ref(self.factory, what=f"architecture {self.name!r}")
        return fn(d_in=d_in, d_sae=d_sae, seed=seed, **{**self.params, **overrides})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.params, "sae_lens_architecture": self.sae_lens_architecture}
