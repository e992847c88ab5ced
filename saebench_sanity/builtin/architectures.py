"""Built-in architectures: sae-lens training SAEs, declared exactly as a plugin would declare them
(``SaeLensArchitecture`` over sae-lens's registry; target-L0 mapping, warm-up field, controlled
coefficients and calibration on the spec)."""

from saebench_sanity.architectures.base import ArchitectureSpec
from saebench_sanity.architectures.build import SaeLensArchitecture
from saebench_sanity.hookspecs import hookimpl

_PLAIN_ROLES = {"W_enc": "encoder", "W_dec": "decoder", "b_enc": "encoder_bias", "b_dec": "decoder_bias"}
_K = "saebench_sanity.architectures.sparsity:k_from_target_l0"
_BATCH_THRESHOLD = "saebench_sanity.architectures.batchtopk:calibrate_threshold"

ARCHITECTURES = [
    ArchitectureSpec(
        name="relu",
        description="ReLU SAE with L1 penalty (sae-lens StandardTrainingSAE)",
        factory=SaeLensArchitecture("standard", name="relu"),
        params={"l1_coefficient": 5.0},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="l1_coefficient",
        sae_lens_architecture="standard",
        sparsity_warm_up_param="l1_warm_up_steps",
        sparsity_coefficients=("l1",),
    ),
    ArchitectureSpec(
        name="topk",
        description="TopK SAE (sae-lens TopKTrainingSAE)",
        factory=SaeLensArchitecture("topk"),
        params={"k": 20},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="topk",
        target_l0_params=_K,
    ),
    ArchitectureSpec(
        name="batchtopk",
        description="BatchTopK SAE (sae-lens BatchTopKTrainingSAE; inference uses the learned threshold)",
        factory=SaeLensArchitecture("batchtopk"),
        params={"k": 20},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="batchtopk",
        target_l0_params=_K,
        calibration=_BATCH_THRESHOLD,
    ),
    ArchitectureSpec(
        name="jumprelu",
        description="JumpReLU SAE with L0 penalty and learned thresholds (sae-lens JumpReLUTrainingSAE)",
        factory=SaeLensArchitecture("jumprelu"),
        params={"l0_coefficient": 1.0},
        roles={**_PLAIN_ROLES, "threshold": "threshold"},
        sparsity_param="l0_coefficient",
        sae_lens_architecture="jumprelu",
        target_l0_params="saebench_sanity.architectures.sparsity:jumprelu_quadratic_target",
        sparsity_warm_up_param="l0_warm_up_steps",
        sparsity_coefficients=("l0",),
    ),
    ArchitectureSpec(
        name="gated",
        description="Gated SAE (sae-lens GatedTrainingSAE)",
        factory=SaeLensArchitecture("gated"),
        params={"l1_coefficient": 5.0},
        roles={"W_enc": "encoder", "W_dec": "decoder", "b_gate": "encoder_bias", "b_mag": "encoder_bias",
               "r_mag": "scale", "b_dec": "decoder_bias"},
        sparsity_param="l1_coefficient",
        sae_lens_architecture="gated",
        sparsity_warm_up_param="l1_warm_up_steps",
        sparsity_coefficients=("l1",),
    ),
    ArchitectureSpec(
        name="matryoshka",
        description="Matryoshka BatchTopK SAE, group fractions 0.5/0.3/0.2 (sae-lens MatryoshkaBatchTopKTrainingSAE)",
        factory="saebench_sanity.architectures.matryoshka:build",  # group_fractions -> matryoshka_widths
        params={"k": 20, "group_fractions": [0.5, 0.3, 0.2]},
        roles=dict(_PLAIN_ROLES),
        sparsity_param="k",
        sae_lens_architecture="matryoshka_batchtopk",
        target_l0_params=_K,
        calibration=_BATCH_THRESHOLD,
    ),
]


@hookimpl
def saebench_register_architectures(register):
    for spec in ARCHITECTURES:
        register(spec)
